"""On-disk index: a directory of .npy arrays plus manifest.json, saved so that a crash loses nothing.

A save writes a complete, fsynced copy into a temporary sibling with a per-call name and swaps
it in with two renames (``out`` -> ``.{name}.old-*``, temporary -> ``out``), each made durable
by fsyncing the parent directory. A crash at any point therefore leaves the old or the new
index whole: before the first rename ``out`` is untouched, after the second it is the new one,
and in between only the complete ``.old-*`` sibling exists, which :func:`read_manifest` (called
by every load) renames back. Temporary directories are never loaded; the leftovers of savers
that died are removed by the next save or load. Loads are not isolated
from a save to the same path running at the same time (they may fail, or read files of both
versions if the swap lands mid-load): the files on disk are always one whole version.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from lsr.errors import IndexFormatError
from lsr.util import sha256_file, thread_map

FORMAT = "lsr-index"
FORMAT_VERSION = 2  # of an index directory; 2 stores ids as narrow as they fit (lsr.index.build.id_dtype), 1 reads too
# A collection directory (lsr.retrieval.collection) is swapped in and recovered the same way;
# this file, written last when it is built, marks it complete.
COLLECTION_MARKER = "collection.json"
MANIFEST = "manifest.json"

# errno of a rename onto a directory that is not empty: someone put an index at ``out`` first.
_TAKEN = (errno.ENOTEMPTY, errno.EEXIST)


def write_index_dir(
    out: str | os.PathLike,
    arrays: Mapping[str, np.ndarray],
    json_files: Mapping[str, Any],
    manifest: dict[str, Any],
    threads: int | None = None,
) -> Path:
    """Write arrays and JSON files into a fresh directory and swap it in at ``out``, crash-safely.

    On an error the previous index is put back before raising (if even that fails, the
    ``.old-*`` directory left behind is recovered by the next load). An existing ``out`` is
    replaced only if it is an lsr index (or empty). Saves from several threads or processes
    may race: each completes and ``out`` ends up holding one of them. A successful save then
    removes leftovers of dead savers (see :func:`_remove_stale`). The files are written on
    ``threads`` threads (default: every core).
    """
    return replace_dir(out, lambda tmp: _write_files(tmp, arrays, json_files, manifest, threads))


def replace_dir(out: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """Have ``build`` fill a fresh temporary sibling of ``out`` (its files fsynced), then swap
    it in at ``out`` crash-safely (see the module docstring): an index or a collection."""
    out = Path(out)
    _refuse_foreign(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out, "tmp")
    tmp.mkdir()
    olds: list[Path] = []
    try:
        build(tmp)
        fsync_dir(tmp)
        _swap_in(tmp, out, olds)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if olds and not _complete(out):
            _restore(olds.pop(), out)  # stays an .old-* sibling if out is taken or the rename fails
        raise
    finally:
        for old in olds:
            _remove(old)
    _remove_stale(out)
    return out


def _complete(path: Path) -> bool:
    return (path / MANIFEST).is_file() or (path / COLLECTION_MARKER).is_file()


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an index directory, after checking it is complete and one this lsr can read.

    If ``path`` is missing (or an empty directory) because a save crashed between its two
    renames, the newest complete ``.old-*`` sibling is renamed back to ``path`` first.
    """
    path = Path(path)
    recover(path)
    return _check(path)


def recover(path: str | os.PathLike) -> None:
    """If ``path`` is missing or empty because a save crashed between its two renames, rename
    the newest complete ``.old-*`` sibling (an index or a collection) back to it; then remove
    what savers that died left beside it (see :func:`_remove_stale`), so a killed build costs
    no disk once the index is next opened."""
    path = Path(path)
    try:
        vacant = not os.listdir(path)
    except FileNotFoundError:
        vacant = True
    except NotADirectoryError:
        vacant = False
    if vacant:
        _recover(path)
    try:
        _remove_stale(path, olds=_complete(path))
    except OSError:
        pass  # a read-only location: the leftovers stay until a writer can remove them


def verify_files(path: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Compare every file against the checksum recorded at build time."""
    path = Path(path)
    for name, meta in manifest["files"].items():
        if sha256_file(path / name) != meta["sha256"]:
            raise IndexFormatError(f"{path / name} does not match its checksum: the index is damaged")


def load_array(path: Path, name: str, mmap: bool = True) -> np.ndarray:
    """An array file, or IndexFormatError when it is missing, empty or not an .npy array."""
    try:
        return np.load(path / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - a damaged header fails in numpy's parser in many ways (TokenError...)
        raise IndexFormatError(f"{path / (name + '.npy')} is damaged or missing ({type(e).__name__}: {e})") from None


def load_json(path: Path, name: str) -> Any:
    """A JSON file, or IndexFormatError when it is missing or not JSON."""
    try:
        with open(path / f"{name}.json", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise IndexFormatError(f"{path / (name + '.json')} is damaged or missing ({type(e).__name__}: {e})") from None


def _refuse_foreign(out: Path) -> None:
    """Refuse to replace anything at ``out`` but an lsr index or an empty directory."""
    try:
        names = os.listdir(out)  # one look: a concurrent save may move ``out`` away at any moment
    except FileNotFoundError:
        return
    except NotADirectoryError:
        names = None
    if names is None or (names and MANIFEST not in names and COLLECTION_MARKER not in names):
        raise IndexFormatError(f"{out} exists and is not an lsr index; refusing to overwrite it")


def _check(path: Path) -> dict[str, Any]:
    """The manifest at ``path`` if every file it names is there with its recorded size."""
    if not path.is_dir():
        raise IndexFormatError(f"no index directory at {path}")
    try:
        with open(path / MANIFEST, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise IndexFormatError(f"{path} is not an lsr index (no {MANIFEST})") from None
    except ValueError as e:  # not UTF-8, or not JSON
        raise IndexFormatError(f"{path / MANIFEST} is damaged: {e}") from None
    format_ = manifest.get("format") if isinstance(manifest, dict) else None
    if format_ != FORMAT:
        raise IndexFormatError(f"{path} is not an lsr index (format {format_!r})")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise IndexFormatError(f"{path / MANIFEST} is damaged: format_version is {version!r}, not a version number")
    if version > FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} has index format version {version}, newer than this lsr reads ({FORMAT_VERSION}); upgrade lsr"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(name, str) and name and "/" not in name and name not in (".", "..") and isinstance(meta, dict)
        and isinstance(meta.get("bytes"), int) and isinstance(meta.get("sha256"), str) for name, meta in files.items()
    ):
        raise IndexFormatError(f"{path / MANIFEST} is damaged: its list of files is not one this lsr wrote")
    missing = [name for name in manifest["files"] if not (path / name).is_file()]
    if missing:
        raise IndexFormatError(f"{path} is incomplete: missing {', '.join(missing)}")
    for name, meta in manifest["files"].items():
        size = (path / name).stat().st_size
        if size != meta.get("bytes"):
            raise IndexFormatError(f"{path / name} has {size} bytes, not {meta.get('bytes')}: the index is damaged")
    return manifest


def _write_files(
    tmp: Path, arrays: Mapping[str, np.ndarray], json_files: Mapping[str, Any], manifest: dict[str, Any], threads: int | None
) -> None:
    """Fill ``tmp`` durably; the manifest goes last, so a directory with one is complete.

    Every file is written and hashed from memory, the largest first on ``threads`` threads,
    before any is fsynced: the disk drains the first files while the later ones are written,
    instead of the writer waiting on each file in turn and then reading them all back for their
    checksums. Several threads pay off because on a VM each fresh page of the page cache costs
    the host's fault (about 2 ms/MB here), and those proceed in parallel.
    """
    payloads: dict[str, np.ndarray | bytes] = {f"{name}.npy": np.ascontiguousarray(arr) for name, arr in arrays.items()}
    payloads.update({f"{name}.json": json.dumps(obj, ensure_ascii=False).encode("utf-8") for name, obj in json_files.items()})
    with ExitStack() as stack:
        opened = {name: stack.enter_context(open(tmp / name, "xb")) for name in payloads}

        def write(name: str) -> tuple[str, dict[str, Any]]:
            data = payloads[name]
            return name, _write_npy(opened[name], data) if isinstance(data, np.ndarray) else _write_bytes(opened[name], data)

        files = dict(thread_map(write, sorted(payloads, key=lambda n: -memoryview(payloads[n]).nbytes), threads))
        thread_map(_flush, opened.values(), threads)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "files": dict(sorted(files.items()))}
    with durable_file(tmp / MANIFEST) as f:
        f.write(json.dumps(manifest, indent=2).encode("utf-8"))
    fsync_dir(tmp)


def _flush(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


def _write_bytes(f: BinaryIO, data: bytes) -> dict[str, Any]:
    f.write(data)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _write_npy(f: BinaryIO, arr: np.ndarray) -> dict[str, Any]:
    """Write ``arr`` (C-contiguous) as .npy, as np.save does; returns its manifest entry (bytes,
    sha256 of the header and the array's memory)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(arr))
    digest = hashlib.sha256(header.getvalue())
    data = memoryview(arr.reshape(-1)).cast("B")
    f.write(header.getvalue())
    f.write(data)
    digest.update(data)
    return {"bytes": header.tell() + data.nbytes, "sha256": digest.hexdigest()}


def _swap_in(tmp: Path, out: Path, olds: list[Path]) -> None:
    """Rename ``out`` away (recording it in ``olds``) and ``tmp`` to ``out``, both durably.

    Loops when another save, or a load recovering an ``.old-*``, puts an index at ``out``
    between the two renames: that one is moved away too, so this save still lands whole.
    """
    while True:
        if out.exists():
            _refuse_foreign(out)  # again: something may have appeared there while we wrote
            old = _sibling(out, "old")
            try:
                os.rename(out, old)
            except FileNotFoundError:
                pass  # another save moved it away first
            else:
                olds.append(old)
                fsync_dir(out.parent)
        try:
            os.rename(tmp, out)
        except OSError as e:
            if e.errno not in _TAKEN:
                raise
            continue
        fsync_dir(out.parent)
        return


def _recover(out: Path) -> None:
    """Rename the newest complete ``.old-*`` sibling back to ``out``, if there is one."""
    complete = []
    for old, _ in _siblings(out, "old"):
        try:
            if (old / COLLECTION_MARKER).is_file():
                complete.append(((old / COLLECTION_MARKER).stat().st_mtime_ns, old))
                continue
            _check(old)
            complete.append(((old / MANIFEST).stat().st_mtime_ns, old))
        except (IndexFormatError, OSError):
            continue  # partly removed or never complete: not a candidate
    if not complete:
        return
    try:
        os.rename(max(complete)[1], out)
    except FileNotFoundError:
        return  # a concurrent save or load took it; read whatever is at ``out`` now
    except OSError as e:
        if e.errno in _TAKEN:
            return
        raise
    fsync_dir(out.parent)


def _restore(old: Path, out: Path) -> None:
    """Best-effort rollback of a failed save; if it fails, ``old`` stays for the next load to recover."""
    try:
        os.rename(old, out)
        fsync_dir(out.parent)
    except OSError:
        pass


def _remove_stale(out: Path, olds: bool = True) -> None:
    """Remove the ``.tmp-*`` (and with ``olds`` the ``.old-*``) siblings of ``out`` left by
    savers that died.

    A temporary is never loaded, so a dead saver's is garbage; an ``.old-*`` is garbage once a
    complete index is at ``out`` (after a save, or after a load's recovery). Conservative: a
    sibling is removed only if the pid in its name is not a running process (a reused pid
    keeps it), and never this process's own, which other threads may be using. Liveness is
    checked in this host's pid namespace only.
    """
    for kind in ("tmp", "old") if olds else ("tmp",):
        for path, pid in _siblings(out, kind):
            if pid != os.getpid() and not _alive(pid):
                _remove(path)


def _remove(path: Path) -> None:
    """Delete an index directory, manifest first, so a half-deleted one never looks complete."""
    (path / MANIFEST).unlink(missing_ok=True)
    (path / COLLECTION_MARKER).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def _sibling(out: Path, kind: str) -> Path:
    """A name next to ``out`` unique to this call; it carries the pid so leftovers can be told stale."""
    return out.with_name(f".{out.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex}")


def _siblings(out: Path, kind: str) -> list[tuple[Path, int]]:
    """Directories made by :func:`_sibling` for ``out`` and ``kind``, with their owners' pids."""
    prefix = f".{out.name}.{kind}-"
    try:
        entries = list(out.parent.iterdir())
    except FileNotFoundError:
        return []
    found = []
    for p in entries:
        if p.name.startswith(prefix):
            pid, _, unique = p.name[len(prefix):].partition("-")
            if pid.isdigit() and len(unique) == 32 and p.is_dir():
                found.append((p, int(pid)))
    return found


def _alive(pid: int) -> bool:
    """Whether a process with this pid runs (signal 0 checks without signalling)."""
    if os.name == "nt":
        return True  # os.kill would terminate the process: keep its leftovers
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process
    return True


@contextmanager
def durable_file(path: Path) -> Iterator[BinaryIO]:
    """A new file whose bytes are on disk (fsynced) when the block ends without error."""
    with open(path, "xb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def replace_file(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write`` beside ``path``, fsync it, rename it over ``path`` and fsync
    the directory: readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with durable_file(tmp) as f:
            write(f)
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the entries of a directory (new files, renames) durable."""
    if os.name == "nt":
        return  # Windows cannot open a directory to fsync it
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
