"""Index saves are crash-safe: whatever fails or dies mid-save, the old or the new index loads whole."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from lsr.errors import IndexFormatError
from lsr.index.storage import load_array, load_json, read_manifest, verify_files, write_index_dir

VERSIONS = {"old": 1, "new": 2, "other": 3}
OTHER = {"old": "new", "new": "old"}


def contents(version: str, size: int = 1000) -> tuple[dict, dict, dict]:
    """Arrays, JSON files and manifest extras of one version; sizes differ so a mix shows."""
    k = VERSIONS[version]
    arrays = {
        "ints": np.arange(size + k, dtype=np.int64) * k,
        "floats": np.full(size // 2 + k, k, dtype=np.float64),
    }
    return arrays, {"meta": {"version": version}}, {"marker": version}


def save(out: Path, version: str, size: int = 1000) -> Path:
    return write_index_dir(out, *contents(version, size))


def loaded_version(out: Path, size: int = 1000) -> str:
    """The version at ``out``, after checking every file is exactly that version's."""
    manifest = read_manifest(out)
    verify_files(out, manifest)
    version = manifest["marker"]
    arrays, json_files, _ = contents(version, size)
    for name, expected in arrays.items():
        np.testing.assert_array_equal(load_array(out, name, mmap=False), expected)
    assert load_json(out, "meta") == json_files["meta"]
    return version


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def sibling(out: Path, kind: str, pid: int) -> Path:
    return out.with_name(f".{out.name}.{kind}-{pid}-{uuid.uuid4().hex}")


class Counter:
    """Wraps os.rename or os.fsync: counts calls, fails the n-th (and later ones if persistent)."""

    def __init__(self, real, fail_at: int = 0, persistent: bool = False):
        self.real, self.fail_at, self.persistent, self.calls = real, fail_at, persistent, 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls == self.fail_at or (self.persistent and 0 < self.fail_at < self.calls):
            raise OSError(errno.EIO, "injected failure")
        return self.real(*args)


def count_calls(tmp_path: Path, op: str) -> int:
    out = tmp_path / "count" / "idx"
    save(out, "old")
    counter = Counter(getattr(os, op))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, op, counter)
        save(out, "new")
    return counter.calls


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
@pytest.mark.parametrize("op", ["rename", "fsync"])
def test_a_failing_step_leaves_the_old_or_the_new_index(tmp_path, monkeypatch, op, persistent):
    """Fail the n-th rename/fsync of a replacing save, for every n: the error propagates, and the
    index loads as the new one exactly when its rename into place had happened, else as the old."""
    calls = count_calls(tmp_path, op)
    assert calls >= (2 if op == "rename" else 7)  # two renames; 3 files, manifest, tmp dir, parent twice
    real_rename = os.rename
    outcomes = []
    for n in range(1, calls + 1):
        parent = tmp_path / f"{op}-{n}"
        out = parent / "idx"
        save(out, "old")
        committed = []

        def rename(src, dst, _out=out, _committed=committed):
            real_rename(src, dst)
            if Path(dst) == _out and ".tmp-" in Path(src).name:
                _committed.append(True)

        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, op, Counter(getattr(os, op), n, persistent))
        with pytest.raises(OSError, match="injected failure"):
            save(out, "new")
        monkeypatch.undo()
        version = loaded_version(out)
        assert version == ("new" if committed else "old"), f"failing call {n}"
        assert listing(parent) == ["idx"], f"failing call {n}"
        outcomes.append(version)
    assert "old" in outcomes
    if op == "fsync":
        assert outcomes[-1] == "new"  # the last fsync makes the committing rename durable


SAVER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from test_storage import OTHER, save
    out, size = sys.argv[2], int(sys.argv[3])
    for line in sys.stdin:  # one line per trial: the version to save first
        version = line.strip()
        pid = os.fork()
        if pid == 0:
            try:
                while True:
                    save(out, version, size)
                    version = OTHER[version]
            finally:
                os._exit(1)
        print(pid, flush=True)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_killing_a_saving_process_at_random_moments_leaves_a_loadable_index(tmp_path):
    """SIGKILL a process saving alternating versions of a few MB at random moments (40 trials):
    each time the index loads whole as one version. A `python -c` server forks the savers, so a
    trial costs a fork instead of an interpreter start with lsr's imports."""
    size = 1_000_000  # ~12 MB per version: a save takes tens of ms
    out = tmp_path / "idx"
    seconds = 0.0
    for version in ("old", "new"):
        started = time.perf_counter()
        save(out, version, size)
        seconds = max(seconds, time.perf_counter() - started)
    rng = random.Random(20240607)
    server = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(Path(__file__).parent), str(out), str(size)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    outcomes, saver = [], None
    try:
        version = loaded_version(out, size)
        for _ in range(40):
            server.stdin.write(f"{OTHER[version]}\n")
            server.stdin.flush()
            saver = int(server.stdout.readline())
            time.sleep(rng.uniform(0, 3 * seconds))
            os.kill(saver, signal.SIGKILL)
            assert int(server.stdout.readline()) == -signal.SIGKILL  # it was saving, not crashed
            saver = None
            before, version = version, loaded_version(out, size)
            outcomes.append("unchanged" if version == before else "replaced")
    finally:
        if saver is not None:  # a failed trial: stop its saver, which the server waits for
            os.kill(saver, signal.SIGKILL)
        server.stdin.close()
        server.wait(timeout=30)
    # kills landed both before and after a save committed, so both kinds of moment were tested
    assert {"unchanged", "replaced"} <= set(outcomes), outcomes
    save(out, "old", size)  # the killed savers are dead: their leftovers go
    assert listing(tmp_path) == ["idx"]


def test_two_threads_saving_to_one_path_do_not_collide(tmp_path):
    out = tmp_path / "idx"
    save(out, "old")
    barrier = threading.Barrier(2)
    errors = []

    def saver(version):
        try:
            barrier.wait()
            for _ in range(50):
                save(out, version)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=saver, args=(v,)) for v in ("old", "new")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert loaded_version(out) in {"old", "new"}
    assert listing(tmp_path) == ["idx"]


@pytest.mark.parametrize("interloper", ["save", "load"])
def test_a_save_overtaken_between_its_renames_still_lands(tmp_path, monkeypatch, interloper):
    """Another save, or a load recovering the .old-* directory, puts an index at ``out`` just
    before this save renames its own in: this save moves that one away too and wins."""
    out = tmp_path / "idx"
    save(out, "old")
    real_rename = os.rename
    overtaken = []

    def rename(src, dst):
        if Path(dst) == out and ".tmp-" in Path(src).name and not overtaken:
            overtaken.append(True)
            if interloper == "save":
                save(out, "other")
            else:
                assert loaded_version(out) == "old"
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    save(out, "new")
    monkeypatch.undo()
    assert overtaken
    assert loaded_version(out) == "new"
    assert listing(tmp_path) == ["idx"]


def test_a_foreign_directory_appearing_mid_save_keeps_both(tmp_path, monkeypatch):
    """If someone else's files appear at ``out`` between the renames, the save refuses them and
    keeps the old index as its .old-* sibling rather than deleting it."""
    out = tmp_path / "idx"
    save(out, "old")
    real_rename = os.rename

    def rename(src, dst):
        if Path(dst) == out and ".tmp-" in Path(src).name:
            out.mkdir()
            (out / "thesis.tex").write_text("precious")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(IndexFormatError, match="not an lsr index; refusing"):
        save(out, "new")
    monkeypatch.undo()
    assert listing(out) == ["thesis.tex"]
    [old] = [p for p in tmp_path.iterdir() if p.name.startswith(".idx.old-")]
    assert loaded_version(old) == "old"
    assert len(listing(tmp_path)) == 2


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_a_lone_old_directory_is_recovered_on_load(tmp_path, state):
    """A crash between the two renames of a save leaves only `.idx.old-*`: loading puts it back."""
    out = tmp_path / "idx"
    save(out, "old")
    os.rename(out, sibling(out, "old", dead_pid()))
    if state == "empty":
        out.mkdir()
    assert loaded_version(out) == "old"
    assert listing(tmp_path) == ["idx"]


def test_recovery_takes_the_newest_complete_old_and_never_a_temporary(tmp_path):
    out = tmp_path / "idx"
    pid = dead_pid()
    dirs = {}
    for i, (version, kind) in enumerate([("old", "old"), ("new", "old"), ("other", "old"), ("other", "tmp")]):
        dirs[version, kind] = sibling(out, kind, pid)
        os.rename(save(tmp_path / "scratch", version), dirs[version, kind])
        os.utime(dirs[version, kind] / "manifest.json", ns=(10**18 + i, 10**18 + i))
    (dirs["other", "old"] / "ints.npy").write_bytes(b"truncated")  # newest old, but incomplete
    assert loaded_version(out) == "new"
    assert listing(tmp_path) == ["idx"]  # the dead saver's other leftovers are removed by the load


def test_a_load_removes_leftovers_of_dead_savers_only(tmp_path):
    """A killed build's temporaries and superseded olds go at the next load (a live saver's stay);
    without a complete index there, only temporaries go: an old may still be recovered."""
    out = tmp_path / "idx"
    dead, live = dead_pid(), os.getppid()
    leftovers = {(kind, pid): sibling(out, kind, pid) for kind in ("tmp", "old") for pid in (dead, live)}
    for path in leftovers.values():
        path.mkdir()
        (path / "ints.npy").write_bytes(b"partial")
    with pytest.raises(IndexFormatError, match="no index directory"):
        read_manifest(out)
    assert leftovers["tmp", dead].name not in listing(tmp_path)
    assert leftovers["old", dead].name in listing(tmp_path)
    os.rename(save(tmp_path / "scratch", "old"), out)
    assert loaded_version(out) == "old"
    assert listing(tmp_path) == sorted(["idx", leftovers["tmp", live].name, leftovers["old", live].name])


def test_nothing_to_recover_is_still_an_error(tmp_path):
    out = tmp_path / "idx"
    incomplete = sibling(out, "old", dead_pid())
    os.rename(save(tmp_path / "scratch", "old"), incomplete)
    (incomplete / "floats.npy").unlink()
    with pytest.raises(IndexFormatError, match="no index directory"):
        read_manifest(out)
    assert listing(tmp_path) == [incomplete.name]


def test_a_save_removes_leftovers_of_dead_savers_only(tmp_path):
    out = tmp_path / "idx"
    save(out, "old")
    dead, live = dead_pid(), os.getppid()
    leftovers = {(kind, pid): sibling(out, kind, pid) for kind in ("tmp", "old") for pid in (dead, live, os.getpid())}
    for path in leftovers.values():
        path.mkdir()
        (path / "ints.npy").write_bytes(b"partial")
    foreign = tmp_path / ".idx.old-notes"  # not a name a save makes
    foreign.mkdir()
    save(out, "new")
    assert loaded_version(out) == "new"
    kept = {leftovers[kind, pid].name for kind in ("tmp", "old") for pid in (live, os.getpid())}
    assert listing(tmp_path) == sorted({"idx", foreign.name} | kept)


def test_a_foreign_directory_is_never_replaced(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(IndexFormatError, match="not an lsr index; refusing"):
        save(out, "new")
    assert (out / "thesis.tex").read_text() == "precious"
    assert listing(tmp_path) == ["mine"]


def test_a_manifest_file_with_wrong_size_is_damage(tmp_path):
    out = save(tmp_path / "idx", "old")
    with open(out / "floats.npy", "ab") as f:
        f.write(b"\0")
    with pytest.raises(IndexFormatError, match="floats.npy has .* bytes, not .*: the index is damaged"):
        read_manifest(out)
