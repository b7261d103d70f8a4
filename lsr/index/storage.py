"""On-disk index: a directory of .npy arrays plus manifest.json, written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lsr.errors import IndexFormatError

FORMAT = "lsr-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_index_dir(
    out: str | os.PathLike,
    arrays: Mapping[str, np.ndarray],
    json_files: Mapping[str, Any],
    manifest: dict[str, Any],
) -> Path:
    """Write arrays and JSON files into a fresh directory and move it into place at ``out``.

    The files go to a sibling temporary directory first; only a complete index is renamed
    to ``out``, so a crash mid-write never leaves a half-written index where a good one was.
    An existing directory at ``out`` is replaced only if it is an lsr index (or empty).
    """
    out = Path(out)
    if out.exists() and not (out / MANIFEST).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise IndexFormatError(f"{out} exists and is not an lsr index; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        files = {}
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr))
        for name, obj in json_files.items():
            with open(tmp / f"{name}.json", "w", encoding="utf-8") as f:
                json.dump(obj, f, ensure_ascii=False)
        for p in sorted(tmp.iterdir()):
            files[p.name] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "files": files}
        with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an index directory, after checking it is one this lsr can read."""
    path = Path(path)
    if not path.is_dir():
        raise IndexFormatError(f"no index directory at {path}")
    try:
        with open(path / MANIFEST, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise IndexFormatError(f"{path} is not an lsr index (no {MANIFEST})") from None
    except json.JSONDecodeError as e:
        raise IndexFormatError(f"{path / MANIFEST} is damaged: {e}") from None
    if manifest.get("format") != FORMAT:
        raise IndexFormatError(f"{path} is not an lsr index (format {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} has index format version {version}, newer than this lsr reads ({FORMAT_VERSION}); upgrade lsr"
        )
    missing = [name for name in manifest["files"] if not (path / name).is_file()]
    if missing:
        raise IndexFormatError(f"{path} is incomplete: missing {', '.join(missing)}")
    return manifest


def verify_files(path: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Compare every file against the checksum recorded at build time."""
    path = Path(path)
    for name, meta in manifest["files"].items():
        if _sha256(path / name) != meta["sha256"]:
            raise IndexFormatError(f"{path / name} does not match its checksum: the index is damaged")


def load_array(path: Path, name: str, mmap: bool = True) -> np.ndarray:
    return np.load(path / f"{name}.npy", mmap_mode="r" if mmap else None)


def load_json(path: Path, name: str) -> Any:
    with open(path / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)
