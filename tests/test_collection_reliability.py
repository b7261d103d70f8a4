"""Reliability of a living collection (issue 12, "Reliability tests"): a writer killed with
SIGKILL at random moments loses no acknowledged batch and leaves none half written; a real
`lsr serve --writable` answers every search from one committed generation while it takes writes;
a full disk or a permission denied at any point of a commit leaves the previous generation intact,
served and the changes still pending; one writer at a time, and a dead writer's lock is recovered.

The crash test's documents are functions of their ids, so the live set can be checked against an
independent brute-force scorer: every batch has one weight of 65535 (the u16 maximum), so each
segment's impact unit is 1.0 and exact search returns exact integer scores.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import free_port, run_cli, start_server, stop_server

from lsr.data.beir import load_corpus
from lsr.data.docstore import DocStore
from lsr.errors import LsrError
from lsr.index import SparseIndex, storage
from lsr.retrieval import Retriever
from lsr.retrieval.collection import Collection

N = 16  # documents per batch
MAXW = 65535.0  # in every batch: the u16 impact unit of every segment is exactly 1.0
QUERIES = [{"t1": 1.0, "s3": 2.0}, {"t0": 1.0, "t4": 1.0, "s7": 3.0, "latest": 1.0}]


# ---- documents that are functions of their ids ----------------------------------------------
def doc_id(batch: int, pos: int) -> str:
    return f"b{batch:05d}-{pos:02d}"


def parse_id(doc: str) -> tuple[int, int]:
    b, p = doc[1:].split("-")
    return int(b), int(p)


def doc_vector(batch: int, pos: int) -> dict[str, float]:
    vector = {f"u{batch}": float(1 + pos % 3), f"t{pos % 5}": float(1 + (7 * batch + pos) % 9),
              f"s{(batch + pos) % 11}": float(1 + (batch + 2 * pos) % 4)}
    if pos == 0:
        vector["maxw"] = MAXW
    return vector


def latest_vector(batch: int) -> dict[str, float]:
    return {"latest": float(1 + batch % 5), "t1": 2.0}


def batch_docs(batch: int, trial: int) -> list[dict]:
    """A batch: N new documents, and an upsert of "latest" (an update: a delete and an add in one commit)."""
    docs = [{"id": doc_id(batch, i), "vector": doc_vector(batch, i), "metadata": {"batch": batch, "pos": i, "trial": trial}}
            for i in range(N)]
    return docs + [{"id": "latest", "vector": latest_vector(batch), "metadata": {"batch": batch}}]


# ---- helpers over a committed generation ---------------------------------------------------------
def live_ids(snap) -> list[str]:
    """Live ids of a snapshot in global row order (the tie order of exact search)."""
    out: list[str] = []
    for ix, dead in zip(snap.indexes, snap.deleted):
        out += [d for r, d in enumerate(ix.doc_ids) if dead is None or not dead[r]]
    return out


def store_live_ids(path: Path) -> list[str]:
    """Live ids as the SQLite document store has them (read with sqlite3 directly, read-only)."""
    db = sqlite3.connect(f"file:{path / 'docs.sqlite'}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT id FROM docs WHERE deleted_gen IS NULL")]
    finally:
        db.close()


def brute_force(ranked_ids: list[str], vectors: dict[str, dict[str, float]], query: dict[str, float], k: int):
    """Top-k by exact score, ties by global row; documents sharing no term are not hits."""
    scored = []
    for row, d in enumerate(ranked_ids):
        s = sum(w * vectors[d].get(t, 0.0) for t, w in query.items())
        if s > 0:
            scored.append((-s, row, d))
    scored.sort()
    return [d for _, _, d in scored[:k]], [-s for s, _, _ in scored[:k]]


def leftovers(path: Path) -> list[str]:
    """Temporary or unreferenced files of a collection (none after a writer's successful commit)."""
    point = DocStore(path / "docs.sqlite", readonly=True)
    try:
        latest = point.latest_commit()
    finally:
        point.close()
    named_segments = {s["name"] for s in latest["segments"]}
    named_deletes = {s["deletes"] for s in latest["segments"] if s.get("deletes")}
    out = [p.name for p in (path / "segments").iterdir() if p.name not in named_segments]
    out += [p.name for p in (path / "deletes").iterdir() if p.name not in named_deletes]
    out += [str(p.relative_to(path)) for p in path.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    return out


# ---- 1. kill -9 of a writer at random moments -----------------------------------------------------
ACK_DELAY_S = 0.003  # between a commit's return and its acknowledgement (a reply crossing a network)


def warm_up() -> None:
    """Compile (or load the cached) build kernels once, so that forked writers start fast."""
    with tempfile.TemporaryDirectory() as tmp:
        c = Collection.create(Path(tmp) / "c", model=None)
        for b in range(2):
            c.add(batch_docs(b, 0) if b == 0 else batch_docs(b, 0)[:-1])
            c.commit()
        c.optimize()
        c.close()


def write_batches(path: str, log: str, trial: int, first: int) -> None:
    """The writer: batches until killed. The log gets `begin`, `committed` (commit returned) and,
    fsynced, `ack` (the acknowledgement a client would get)."""
    c = Collection.open(path, writable=True)
    with open(log, "a+") as f:
        f.seek(0)
        if f.read()[-1:] not in ("", "\n"):
            f.write("\n")  # a line cut by the kill stays a line of its own
        b = first
        while True:
            f.write(f"begin {trial} {b}\n")
            f.flush()
            c.add(batch_docs(b, trial), upsert=True)
            c.commit()
            f.write(f"committed {trial} {b}\n")
            f.flush()
            time.sleep(ACK_DELAY_S)
            f.write(f"ack {trial} {b}\n")
            f.flush()
            os.fsync(f.fileno())
            b += 1


FORKER = textwrap.dedent(
    """
    import os, sys, traceback
    sys.path.insert(0, sys.argv[1])
    from test_collection_reliability import warm_up, write_batches
    path, log = sys.argv[2], sys.argv[3]
    warm_up()  # before any fork: the build kernels are not parallel, so no threads exist yet
    print("ready", flush=True)
    for line in sys.stdin:  # one line per trial: its number and its first batch number
        trial, first = map(int, line.split())
        pid = os.fork()
        if pid == 0:
            try:
                write_batches(path, log, trial, first)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(1)
        print(pid, flush=True)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
    """
)


def read_log(log: Path) -> list[tuple[str, int, int]]:
    events = []
    text = log.read_text() if log.exists() else ""
    for line in text.splitlines(keepends=True):
        fields = line.split()
        if line.endswith("\n") and len(fields) == 3 and fields[0] in ("begin", "committed", "ack"):  # not a line cut by a kill
            events.append((fields[0], int(fields[1]), int(fields[2])))
    return events


def check_generation(path: Path, acked: set[int], durable: set[int], maybe: int | None, rng: random.Random,
                     check_get: set[int]) -> set[int]:
    """Check a collection after a kill with a read-only reader; returns the batches present.

    ``acked``: acknowledged batches (must be present); ``durable``: present before, or whose commit
    returned (must be present); ``maybe``: the batch being written when the kill landed (present or
    not, but whole).
    """
    collection = Collection.open(path)
    try:
        retriever = Retriever(collection)
        snap = retriever.segments
        ids = live_ids(snap)
        assert len(ids) == len(set(ids)), "a document is live twice"
        assert sorted(ids) == sorted(store_live_ids(path)), "segments and document store disagree on the live set"
        by_batch: dict[int, set[int]] = {}
        for d in ids:
            if d != "latest":
                b, p = parse_id(d)
                by_batch.setdefault(b, set()).add(p)
        present = set(by_batch)
        half = {b: sorted(ps) for b, ps in by_batch.items() if ps != set(range(N))}
        assert not half, f"batches half present: {half}"
        assert acked <= present, f"acknowledged batches lost: {sorted(acked - present)}"
        assert durable <= present, f"committed batches lost: {sorted(durable - present)}"
        unexpected = present - durable - acked - ({maybe} if maybe is not None else set())
        assert not unexpected, f"batches nobody wrote: {sorted(unexpected)}"
        # "latest" was upserted by every batch: exactly one live version, that of the newest batch
        latest = collection.get("latest")
        if present:
            assert ids.count("latest") == 1
            assert latest is not None and latest.metadata == {"batch": max(present)}
        # stored fields of whole batches, and each batch searchable by its own term
        sample = sorted(check_get & present) + rng.sample(sorted(present), min(3, len(present)))
        for b in sample:
            for p in range(N):
                got = collection.get(doc_id(b, p))
                assert got is not None and got.metadata["batch"] == b and got.metadata["pos"] == p, (b, p, got)
        if sample:
            results = retriever.search_batch([{f"u{b}": 1.0} for b in sample], k=N + 4, fields=["metadata"])
            for b, res in zip(sample, results):
                assert sorted(res.ids) == [doc_id(b, p) for p in range(N)], b
                assert {f["metadata"]["batch"] for f in res.fields} == {b}
        # exact search == brute force over the live documents
        vectors = {d: latest_vector(latest.metadata["batch"]) if d == "latest" else doc_vector(*parse_id(d)) for d in ids}
        for query in QUERIES:
            expected_ids, expected_scores = brute_force(ids, vectors, query, 25)
            for mode in ("exact", "exhaustive"):
                res = retriever.search(query, k=25, mode=mode)
                assert res.ids == expected_ids, (mode, query)
                assert res.scores == expected_scores, (mode, query)
        return present
    finally:
        collection.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_killing_a_writer_at_random_moments_loses_no_acknowledged_batch(tmp_path):
    """SIGKILL a writer (add a batch, commit, acknowledge, repeat) at seeded random moments, 60
    trials. After each kill the collection opens for writing (the dead writer's flock is gone), every
    acknowledged batch is whole, searchable and stored, no batch is half there, and exact search
    equals brute force. A `python -c` server forks the writers: a trial costs a fork, not an import."""
    trials = 60
    path, log = tmp_path / "coll", tmp_path / "writes.log"
    Collection.create(path, model=None).close()
    rng = random.Random(20240612)
    errors = tmp_path / "forker.err"
    with errors.open("w") as err:
        forker = subprocess.Popen([sys.executable, "-c", FORKER, str(Path(__file__).parent), str(path), str(log)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
    acked: set[int] = set()
    durable: set[int] = set()  # present after an earlier kill, or its commit returned: must stay
    counts = {"kills": 0, "mid_commit": 0, "cut_before_commit_point": 0, "cut_after_commit_point": 0,
              "after_commit_returned": 0, "before_first_batch": 0, "between_batches": 0}
    writer = None
    scale = 0.25  # kill delays are uniform in [0, scale] s; scale adapts to how fast commits are on this machine
    try:
        assert forker.stdout.readline().strip() == "ready", errors.read_text()
        for trial in range(trials):
            seen = len(read_log(log))
            forker.stdin.write(f"{trial} {trial * 1000}\n")
            forker.stdin.flush()
            writer = int(forker.stdout.readline())
            time.sleep(rng.uniform(0.0, scale))
            os.kill(writer, signal.SIGKILL)
            status = int(forker.stdout.readline())
            assert status == -signal.SIGKILL, f"the writer died by itself ({status}):\n{errors.read_text()}"
            writer = None
            counts["kills"] += 1
            events = read_log(log)[seen:]
            new_acks = {b for kind, _, b in events if kind == "ack"}
            returned = {b for kind, _, b in events if kind == "committed"}
            acked |= new_acks
            last = events[-1] if events else None
            maybe = last[2] if last is not None and last[0] == "begin" else None
            present = check_generation(path, acked, durable | returned, maybe, rng, new_acks | returned | {maybe})
            if last is None:
                counts["before_first_batch"] += 1
            elif last[0] == "begin":  # killed inside add/commit: before the commit point, or after it (merge, cleanup)
                counts["mid_commit"] += 1
                counts["cut_after_commit_point" if maybe in present else "cut_before_commit_point"] += 1
            elif last[0] == "committed":  # killed after commit returned, before the ack
                counts["after_commit_returned"] += 1
            else:
                counts["between_batches"] += 1
            durable |= present
            if not returned:  # a loaded machine: give the next writers longer
                scale = min(scale * 1.3, 1.0)
            elif len(new_acks) > 4:
                scale = max(scale / 1.3, 0.1)
            # the dead writer's lock went with it: a new writer opens (and removes the dead one's files)
            with Collection.open(path, writable=True) as c:
                assert c.snapshot().generation >= 1 or not present
            assert not leftovers(path), leftovers(path)
    finally:
        if writer is not None:
            os.kill(writer, signal.SIGKILL)  # a failed trial: stop the writer the forker waits for
        forker.stdin.close()
        forker.wait(timeout=60)
    print(f"crash test: {counts}, {len(acked)} acknowledged batches, final delay scale {scale:.2f} s")
    assert counts["kills"] == trials
    # the kills landed inside commits, on both sides of the commit point
    assert counts["mid_commit"] >= 10, counts
    assert counts["cut_before_commit_point"] >= 3, counts
    assert counts["cut_after_commit_point"] + counts["after_commit_returned"] >= 1, counts  # unacked batches present too
    assert len(acked) >= 10, counts  # and the writers got work done in between (fewer on a loaded machine)
    # every acknowledged document is there at the end, with its metadata
    final = Collection.open(path)
    try:
        for b in sorted(acked):
            for p in range(N):
                got = final.get(doc_id(b, p))
                assert got is not None and got.metadata == {"batch": b, "pos": p, "trial": b // 1000}
    finally:
        final.close()


# ---- 2. readers during writes: a real server -------------------------------------------------------
GROUP = 10



def group_docs(batch: int) -> list[dict]:
    """The whole group g0..g9, version ``batch``: tagged in metadata and in the vector ("bat" weighs
    ``batch``, so the score of the query {"bat": 1} is the batch number)."""
    return [{"id": f"g{i}", "vector": {"grp": float(1 + i), "bat": float(batch)}, "metadata": {"group": "g", "batch": batch}}
            for i in range(GROUP)]


@pytest.fixture
def writable_server(tmp_path):
    path = tmp_path / "coll"
    with Collection.create(path, model=None) as c:
        c.add(group_docs(1))
        c.add([{"id": f"f{j}", "vector": {"fill": 1.0 + j % 7, f"w{j % 13}": 1.0}, "metadata": {"group": "f", "batch": 0}}
               for j in range(300)])
        c.commit()
    args = ["serve", "--index", str(path), "--writable", "--port", str(free_port()), "--host", "127.0.0.1",
            "--commit-ms", "50", "--commit-docs", "100", "--no-access-log"]
    log = tmp_path / "server.log"
    proc, base = start_server(args, log)
    try:
        yield base, path, log
    finally:
        stop_server(proc)  # the server this test started, by its pid


def test_searches_during_writes_see_one_generation(writable_server):
    """A group writer replaces g0..g9 by a new version per request (?commit=true), a filler writer
    upserts other documents (auto-commit), and search clients ask for the group during ~8 s: every
    request answers 200; every answer holds ten group documents of ONE version (metadata and
    vector agree), never older than a version acknowledged before the request was sent, and never
    older than the thread's previous answer."""
    base, path, log = writable_server
    duration = 8.0
    stop = time.monotonic() + duration
    errors: list[str] = []
    lock = threading.Lock()
    acked = [1]  # the newest group version whose write returned
    counts = {"searches": 0, "batch_searches": 0, "gets": 0, "group_writes": 0, "filler_writes": 0}

    def count(name):
        with lock:
            counts[name] += 1

    def fail(msg):
        with lock:
            errors.append(msg)

    def version_of(hits, what) -> int | None:
        """The one version a group answer holds (None, recorded as an error, if it mixes)."""
        batches = {f["metadata"]["batch"] for f in hits["fields"]}
        if sorted(hits["ids"]) != sorted(f"g{i}" for i in range(GROUP)) or len(batches) != 1:
            fail(f"{what}: not one whole version of the group: {hits['ids']} {batches}")
            return None
        return batches.pop()

    def group_writer():
        batch = 1
        with httpx.Client(base_url=base, timeout=30) as client:
            while time.monotonic() < stop:
                batch += 1
                r = client.post("/documents", params={"commit": "true"}, json={"documents": group_docs(batch)})
                if r.status_code != 200 or not r.json()["committed"]:
                    fail(f"group write {batch}: {r.status_code} {r.text[:300]}")
                    return
                with lock:
                    acked[0] = batch
                count("group_writes")

    def filler_writer():
        rng = random.Random(7)
        with httpx.Client(base_url=base, timeout=30) as client:
            while time.monotonic() < stop:
                docs = [{"id": f"f{rng.randrange(400)}", "vector": {"fill": float(rng.randint(1, 9))}, "metadata": {"group": "f", "batch": 0}}
                        for _ in range(20)]
                docs = list({d["id"]: d for d in docs}.values())
                r = client.post("/documents", json={"documents": docs})
                if r.status_code != 200:
                    fail(f"filler write: {r.status_code} {r.text[:300]}")
                    return
                count("filler_writes")
                time.sleep(0.01)

    def searcher(seed):
        rng = random.Random(seed)
        newest = 1
        with httpx.Client(base_url=base, timeout=30) as client:
            while time.monotonic() < stop:
                with lock:
                    floor = max(acked[0], newest)
                kind = rng.choice(["filtered", "unfiltered", "batch", "get"])
                if kind == "get":
                    r = client.get("/documents/g3")
                    if r.status_code != 200:
                        fail(f"get: {r.status_code} {r.text[:300]}")
                        continue
                    versions = [r.json()["metadata"]["batch"]]
                    count("gets")
                elif kind == "batch":
                    r = client.post("/search/batch", json={"queries": [{"vector": {"bat": 1.0}}, {"vector": {"grp": 1.0}}],
                                                           "k": 20, "filter": {"group": "g"}, "fields": ["metadata"]})
                    if r.status_code != 200:
                        fail(f"batch search: {r.status_code} {r.text[:300]}")
                        continue
                    versions = [version_of(h, "batch search") for h in r.json()["results"]]
                    if len(set(versions)) != 1:
                        fail(f"one batch request answered from two generations: {versions}")
                    count("batch_searches")
                else:
                    body = {"vector": {"bat": 1.0}, "k": 20, "fields": ["metadata"]}
                    if kind == "filtered":
                        body["filter"] = {"group": "g"}
                    r = client.post("/search", json=body)
                    if r.status_code != 200:
                        fail(f"search: {r.status_code} {r.text[:300]}")
                        continue
                    hits = r.json()
                    version = version_of(hits, kind)
                    versions = [version]
                    if version is not None and not all(abs(s - version) <= 1e-3 * version for s in hits["scores"]):
                        fail(f"vectors of version {version} expected, scores {hits['scores']}")
                    count("searches")
                for v in versions:
                    if v is not None and v < floor:
                        fail(f"{kind}: version {v} after version {floor} was acknowledged or seen")
                newest = max([newest, *[v for v in versions if v is not None]])

    threads = [threading.Thread(target=group_writer), threading.Thread(target=filler_writer),
               *[threading.Thread(target=searcher, args=(s,)) for s in range(3)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 60)
    assert not any(t.is_alive() for t in threads), "a client hung"
    print(f"readers during writes: {counts}")
    assert not errors, f"{len(errors)} errors, first: {errors[:5]}\n{log.read_text()[-3000:]}"
    assert counts["group_writes"] >= 10 and counts["filler_writes"] >= 10, counts
    assert counts["searches"] + counts["batch_searches"] >= 20, counts
    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.post("/commit")
        assert r.status_code == 200
        hits = client.post("/search", json={"vector": {"bat": 1.0}, "k": 20, "fields": ["metadata"]}).json()
        assert {f["metadata"]["batch"] for f in hits["fields"]} == {acked[0]}
    assert "Traceback" not in log.read_text()


# ---- 3. faults at commit -------------------------------------------------------------------------
class Fault:
    """Raise ``error`` from calls of ``target`` (an attribute of ``owner``) that ``when`` picks."""

    def __init__(self, monkeypatch, owner, name, error, when=lambda *a, **k: True):
        real = getattr(owner, name)
        self.hits = 0

        def faulty(*args, **kwargs):
            if when(*args, **kwargs):
                self.hits += 1
                raise error
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, faulty)


ENOSPC = OSError(errno.ENOSPC, "No space left on device")
EACCES = PermissionError(errno.EACCES, "Permission denied")


def fill(path: Path) -> Collection:
    """A writable collection of 3 committed batches (3 segments), with pending: a new batch (new
    terms: vocab.json grows), an update of a committed document and a delete."""
    c = Collection.create(path, model=None)
    for b in range(3):
        c.upsert(batch_docs(b, 0))
        c.commit()
    pending_changes(c)
    return c


def pending_changes(c: Collection) -> None:
    c.add(batch_docs(3, 0), upsert=True)
    c.upsert([{"id": doc_id(0, 5), "vector": {"t0": 9.0}, "metadata": {"batch": 0, "pos": 5, "updated": True}}])
    assert c.delete([doc_id(1, 2)])["deleted"] == [doc_id(1, 2)]


TOUCHED = [doc_id(0, 5), doc_id(1, 2), doc_id(3, 0), "latest"]


def observe(retriever: Retriever) -> dict:
    snap = retriever.segments
    results = retriever.search_batch(QUERIES + [{"u3": 1.0}], k=20, fields=["metadata"])
    return {"generation": snap.generation, "live": sorted(live_ids(snap)),
            "hits": [(r.ids, r.scores, r.fields) for r in results],
            "get": {d: (g.metadata if (g := retriever.collection.get(d)) else None) for d in TOUCHED}}


def assert_intact(path: Path, c: Collection, reader: Retriever, before: dict, pending: int) -> None:
    assert c.pending == pending, "the buffered changes were dropped"
    assert c.snapshot().generation == before["generation"]
    assert c.info()["generation"] == before["generation"]
    for d, meta in before["get"].items():
        got = c.get(d)
        assert (got.metadata if got else None) == meta
    assert observe(reader) == before, "a reader opened before the fault no longer serves the old generation"
    fresh = Retriever(Collection.open(path))
    try:
        assert observe(fresh) == before, "a new reader does not find the old generation whole"
    finally:
        fresh.collection.close()


def assert_committed(path: Path, c: Collection, reader: Retriever, before: dict) -> None:
    """After the retry: one new generation holding every change, served to the old reader too."""
    after = observe(reader)
    assert after["generation"] == before["generation"] + 1
    assert c.pending == 0
    assert after["get"][doc_id(0, 5)] == {"batch": 0, "pos": 5, "updated": True}
    assert after["get"][doc_id(1, 2)] is None
    assert after["get"][doc_id(3, 0)] == {"batch": 3, "pos": 0, "trial": 0}
    assert after["get"]["latest"] == {"batch": 3}
    assert sorted(after["hits"][2][0]) == [doc_id(3, p) for p in range(N)]  # the new batch is searchable
    assert set(after["live"]) == set(before["live"]) - {doc_id(1, 2)} | {doc_id(3, p) for p in range(N)}
    assert after["live"].count("latest") == 1
    assert not leftovers(path), leftovers(path)


def under(sub: str):
    return lambda p, *a, **k: Path(p).parent.name == sub


SAVE_POINTS = {
    "vocab.json (replace_file)": (storage, "replace_file", lambda p, *a, **k: Path(p).name == "vocab.json"),
    "deletion bitmap (replace_file)": (storage, "replace_file", under("deletes")),
    "segment (write_index_dir)": (storage, "write_index_dir", lambda *a, **k: True),
    "segment (SparseIndex.save)": (SparseIndex, "save", lambda *a, **k: True),
    "segment file (durable_file)": (storage, "durable_file", lambda *a, **k: True),
    "commit point (DocStore.commit)": (DocStore, "commit", lambda *a, **k: True),
}


@pytest.mark.parametrize("error", [ENOSPC, EACCES], ids=["disk-full", "permission-denied"])
@pytest.mark.parametrize("point", list(SAVE_POINTS))
def test_a_fault_at_commit_keeps_the_previous_generation(tmp_path, monkeypatch, point, error):
    """Disk full or permission denied at each step of a commit: the error propagates as it is, the
    previous generation stays current and served (same generation, searches and stored documents,
    for the writer, an already open reader and a new one), the changes stay pending, and a retry
    without the fault commits them all as the next generation, leaving no stray file."""
    path = tmp_path / "coll"
    c = fill(path)
    reader = Retriever(Collection.open(path))
    before = observe(reader)
    pending = c.pending
    owner, name, when = SAVE_POINTS[point]
    fault = Fault(monkeypatch, owner, name, error, when)
    with pytest.raises(type(error)) as raised:
        c.commit()
    assert raised.value is error or raised.value.errno == error.errno
    assert fault.hits == 1
    assert_intact(path, c, reader, before, pending)
    monkeypatch.undo()
    assert c.commit() == before["generation"] + 1
    assert_committed(path, c, reader, before)
    c.close()


@pytest.mark.parametrize("op", ["fsync", "rename"])
def test_a_fault_at_every_file_operation_of_a_commit(tmp_path, monkeypatch, op):
    """ENOSPC from the n-th os.fsync / os.rename of a commit, for every n until the
    commit makes fewer calls: each failed attempt leaves the previous generation intact and the
    changes pending; then one commit (the fault gone) publishes them."""
    path = tmp_path / "coll"
    c = fill(path)
    reader = Retriever(Collection.open(path))
    before = observe(reader)
    pending = c.pending
    real = getattr(os, op)
    failures = 0
    for n in range(1, 200):
        calls = [0]

        def faulty(*args, _n=n, _calls=calls, **kwargs):
            _calls[0] += 1
            if _calls[0] == _n:
                raise OSError(errno.ENOSPC, f"injected: no space left on device (call {_n} of os.{op})")
            return real(*args, **kwargs)

        monkeypatch.setattr(os, op, faulty)
        try:
            gen = c.commit()
        except OSError as e:
            monkeypatch.undo()
            assert e.errno == errno.ENOSPC and "injected" in str(e)
            failures += 1
            assert_intact(path, c, reader, before, pending)
            continue
        monkeypatch.undo()
        assert calls[0] < n, f"the commit succeeded although call {n} of os.{op} failed"
        assert gen == before["generation"] + 1
        break
    else:
        pytest.fail("the commit never succeeded")
    assert failures >= 2, f"a commit makes only {failures} os.{op} calls?"
    assert_committed(path, c, reader, before)
    c.close()


class FailingTransaction:
    """A DocStore transaction whose statement ``at`` fails as SQLite fails on a full disk."""

    def __init__(self, real, at: str):
        self.real, self.at = real, at

    def __enter__(self):
        db = self.real.__enter__()
        at = self.at

        class Proxy:
            def execute(self, sql, *args):
                if sql.lstrip().upper().startswith(at):
                    raise sqlite3.OperationalError("database or disk is full")
                return db.execute(sql, *args)

            def executemany(self, sql, *args):
                if sql.lstrip().upper().startswith(at):
                    raise sqlite3.OperationalError("database or disk is full")
                return db.executemany(sql, *args)

        return Proxy()

    def __exit__(self, *exc):
        return self.real.__exit__(*exc)


@pytest.mark.parametrize("at", ["INSERT INTO DOCS", "UPDATE DOCS", "INSERT INTO COMMITS", "DELETE FROM COMMITS"])
def test_a_full_disk_inside_the_commit_transaction_rolls_it_back(tmp_path, monkeypatch, at):
    """SQLite reports a full disk at one statement of the commit transaction: all of it rolls back
    (no document row of the failed commit is live), the generation stays, and a retry commits."""
    path = tmp_path / "coll"
    c = fill(path)
    reader = Retriever(Collection.open(path))
    before = observe(reader)
    pending = c.pending
    real = DocStore.transaction
    monkeypatch.setattr(DocStore, "transaction", lambda self: FailingTransaction(real(self), at))
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        c.commit()
    monkeypatch.undo()
    assert sorted(store_live_ids(path)) == before["live"], "rows of the failed transaction are live"
    assert_intact(path, c, reader, before, pending)
    assert c.commit() == before["generation"] + 1
    assert_committed(path, c, reader, before)
    c.close()


def test_a_fault_in_a_merge_after_the_commit_point_does_not_fail_the_commit(tmp_path, monkeypatch, caplog):
    """The 8th segment triggers a merge, which runs after the commit point is published: a full disk
    there must not turn a durable commit into an error (the caller would think its changes lost,
    while they are committed and no longer pending). The commit returns its generation, the merge
    waits for the next commit, which merges into the same results."""
    path = tmp_path / "coll"
    c = Collection.create(path, model=None)
    for b in range(7):
        c.add(batch_docs(b, 0)[:-1])
        c.commit()
    reader = Retriever(Collection.open(path))
    c.add(batch_docs(7, 0)[:-1])
    gen = c.snapshot().generation
    saves = [0]
    real = SparseIndex.save

    def save(self, out):
        saves[0] += 1
        if saves[0] == 2:  # the first save is the new segment, the second the merged one
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, out)

    monkeypatch.setattr(SparseIndex, "save", save)
    with caplog.at_level("WARNING"):
        assert c.commit() == gen + 1
    assert saves[0] == 2, "no merge was attempted"
    assert any("merge" in r.getMessage().lower() for r in caplog.records), "the failed merge was not reported"
    monkeypatch.undo()
    assert c.pending == 0 and len(c.snapshot().indexes) == 8
    unmerged = observe(reader)
    assert unmerged["generation"] == gen + 1 and c.get(doc_id(7, 0)) is not None
    assert not leftovers(path), leftovers(path)
    merged_gen = c.commit()  # nothing pending: the merge is retried
    assert merged_gen == gen + 2 and len(c.snapshot().indexes) == 1
    merged = observe(reader)
    assert merged["hits"] == unmerged["hits"] and merged["live"] == unmerged["live"]
    assert not leftovers(path), leftovers(path)
    c.close()


def test_a_fault_at_commit_of_a_bm25_collection(tmp_path, monkeypatch, adi):
    """A BM25 collection (texts, a growing vocabulary, collection statistics): a full disk at the
    segment save keeps the old generation and its scores; the retry gives the scores of a build
    that never failed."""
    docs = load_corpus(adi)
    path, twin = tmp_path / "coll", tmp_path / "twin"
    c, t = Collection.create(path, model="bm25"), Collection.create(twin, model="bm25")
    for x in (c, t):
        x.add(docs[:50])
        x.commit()
        x.add(docs[50:])
        x.delete([docs[0].id])
    reader = Retriever(Collection.open(path))
    query = "computer information retrieval systems"
    before = reader.search(query, k=10)
    fault = Fault(monkeypatch, SparseIndex, "save", OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError, match="No space left"):
        c.commit()
    assert fault.hits == 1
    monkeypatch.undo()
    assert reader.search(query, k=10) == before and c.pending == len(docs) - 50 + 1
    c.commit()
    t.commit()
    got, expected = reader.search(query, k=10), Retriever(t).search(query, k=10)
    assert got.ids == expected.ids
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-6)
    assert not leftovers(path), leftovers(path)
    c.close()
    t.close()


# ---- 4. one writer at a time; a dead writer's lock ----------------------------------------------------
HOLDER = textwrap.dedent(
    """
    import sys, time
    from lsr.retrieval.collection import Collection
    c = Collection.open(sys.argv[1], writable=True)
    c.add([{"id": "held", "vector": {"x": 1.0}}])  # buffered, never committed: dies with the holder
    print("holding", flush=True)
    time.sleep(120)
    """
)

TRY_WRITE = textwrap.dedent(
    """
    import sys
    from lsr.errors import LsrError
    from lsr.retrieval.collection import Collection
    try:
        Collection.open(sys.argv[1], writable=True).close()
    except LsrError as e:
        print(e)
        sys.exit(3)
    """
)


def test_a_second_writer_gets_a_clear_error_in_this_process_and_another(tmp_path):
    path = tmp_path / "coll"
    c = Collection.create(path, model=None)
    c.add(batch_docs(0, 0))
    c.commit()
    holder = f"pid {os.getpid()}"
    with pytest.raises(LsrError, match=f"is being written by {holder} since .*: one writer at a time"):
        Collection.open(path, writable=True)
    other = subprocess.run([sys.executable, "-c", TRY_WRITE, str(path)], capture_output=True, text=True, timeout=120)
    assert other.returncode == 3, other.stderr
    assert f"is being written by {holder}" in other.stdout and "one writer at a time" in other.stdout
    cli = run_cli("delete", "--index", str(path), "--ids", doc_id(0, 1), check=False)
    assert cli.returncode != 0 and f"is being written by {holder}" in cli.stderr + cli.stdout, cli
    assert "Traceback" not in cli.stderr
    # readers are never blocked by the writer
    reader = Retriever(Collection.open(path))
    assert len(reader.search({"u0": 1.0}, k=N).ids) == N
    # the failed attempts did not disturb the holder: it still writes; closing hands the lock over
    c.add([{"id": "more", "vector": {"x": 1.0}}])
    assert c.commit() == 2
    c.close()
    with Collection.open(path, writable=True) as again:
        assert again.get("more") is not None and again.get(doc_id(0, 1)) is not None


def test_the_lock_of_a_killed_writer_is_recovered(tmp_path):
    path = tmp_path / "coll"
    with Collection.create(path, model=None) as c:
        c.add(batch_docs(0, 0))
        c.commit()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding", proc.stderr.read() if proc.poll() is not None else ""
        with pytest.raises(LsrError, match=f"is being written by pid {proc.pid} since .*one writer at a time"):
            Collection.open(path, writable=True)
    finally:
        proc.kill()  # SIGKILL: no chance to release anything
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert f"pid {proc.pid}" in (path / "write.lock").read_text()  # the stale holder is still written there
    with Collection.open(path, writable=True) as c:  # but the flock died with it
        assert f"pid {os.getpid()}" in (path / "write.lock").read_text()
        assert c.get("held") is None and c.pending == 0  # the dead writer's buffered change is gone
        c.add([{"id": "after", "vector": {"x": 1.0}}])
        assert c.commit() == 2
    with Collection.open(path) as reader:
        assert reader.get("after") is not None and reader.snapshot().num_docs == N + 2


def test_a_killed_build_leaves_nothing_once_the_index_is_opened(tmp_path, adi):
    """`lsr index` killed with SIGKILL while it writes its temporary copy (a rebuild over an
    existing collection): the previous collection still opens whole, and that first open
    removes the dead build's hidden temporary directory (25 MB each on SciFact, once kept forever)."""
    out = tmp_path / "idx"
    run_cli("index", "--corpus", str(adi), "--out", str(out), "--model", "bm25")
    before = Retriever.load(out).search("information retrieval", 5)
    proc = subprocess.Popen([sys.executable, "-m", "lsr.cli", "index", "--corpus", str(adi), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while not any(p.name.startswith(".idx.tmp-") for p in tmp_path.iterdir()):
            assert proc.poll() is None, "the build ended before its temporary directory was seen"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert any(p.name.startswith(".idx.tmp-") for p in tmp_path.iterdir())
    reopened = Retriever.load(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    after = reopened.search("information retrieval", 5)
    assert before.ids and (after.ids, after.scores) == (before.ids, before.scores)
