"""Child process of tests/test_index_fuzz.py: damages index files at random, loads and searches.

Run as ``python index_fuzzer.py DIR N SEED LOG [collection]`` (an index directory, or a
collection's segments, bitmaps and settings) with ``NUMBA_BOUNDSCHECK=1``, so a kernel
reading or writing out of bounds raises IndexError here instead of corrupting memory. Each case
restores the pristine files, mutates one, then:
- ``load(verify=True)`` must refuse any changed array or JSON file (their checksums);
- ``load()`` (structure checks only) must refuse it with an LsrError, or load an index whose
  searches in every mode return well-formed hits (damage to a weight is not structural: only
  the checksums see it, and ``lsr serve`` verifies them at start). The clean index's exact and
  exhaustive top-k must equal a float64 brute force over its float weights first.
Anything else is a failure: another exception type (one example of each kind is reported), or
the process dying (the case being run is written to LOG before it runs, so the parent can name
it). Prints one JSON summary line.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import sys
import traceback
from pathlib import Path

import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.errors import LsrError
from lsr.index import SparseIndex
from lsr.index.storage import MANIFEST
from lsr.retrieval.collection import Collection

K = (1, 7, 60)


def mutate(data: bytes, rng: random.Random, array_start: int) -> tuple[bytes, str]:
    """One random damage of a file's bytes; ``array_start`` is where a .npy's data begins."""
    b = bytearray(data)
    kind = rng.choice(["flip", "flip", "word", "element", "element", "element", "element", "span", "truncate", "append", "header"])
    if kind == "element" and array_start:
        # one element set to a value near a bound it must respect (first, last or any slot):
        # the damage that slips past coarse checks, e.g. the last doc id of the last list
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception:  # noqa: BLE001 - not an array (already damaged): flip a bit instead
            arr = np.zeros(0)
        if arr.size and arr.dtype.kind in "iuf":
            flat = arr.reshape(-1)
            i = rng.choice([0, flat.size - 1, flat.size - 1, rng.randrange(flat.size)])
            top = flat.max()
            value = rng.choice([-1, 0, flat[i] + 1, flat[i] - 1, top + 1, top + 1, top * 2 + 1, np.iinfo(np.int32).max])
            with np.errstate(all="ignore"):
                flat[i] = np.array(value).astype(flat.dtype)
            return data[:array_start] + flat.tobytes(), kind
    if kind == "element":
        kind = "flip"
    if kind == "flip" and b:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "word" and len(b) > array_start + 8:
        # an extreme value in an aligned slot of the data: pointers and ids run out of range
        width = rng.choice([1, 2, 4, 8])
        at = array_start + rng.randrange((len(b) - array_start) // width) * width
        value = rng.choice([0, 1, 2**(8 * width - 1) - 1, 2**(8 * width) - 1, rng.getrandbits(8 * width)])
        b[at:at + width] = value.to_bytes(width, "little")
    elif kind == "span" and b:
        at = rng.randrange(len(b))
        n = min(len(b) - at, rng.randint(1, 64))
        b[at:at + n] = bytes(rng.getrandbits(8) for _ in range(n))
    elif kind == "truncate":
        b = b[:rng.randrange(len(b) + 1)]
    elif kind == "append":
        b += bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 4, 8, 64])))
    else:  # the .npy header (dtype, shape, order) or the start of a JSON file
        at = rng.randrange(min(len(b), max(array_start, 16))) if b else 0
        b[at:at + 1] = bytes([rng.getrandbits(8)])
    return bytes(b), kind


def npy_data_offset(data: bytes) -> int:
    """Where a .npy file's array bytes begin (0 for anything else)."""
    if not data.startswith(b"\x93NUMPY") or len(data) < 10:
        return 0
    if data[6] == 1:
        return 10 + int.from_bytes(data[8:10], "little")
    return 12 + int.from_bytes(data[8:12], "little")


def brute_force(index: SparseIndex, q: SparseVectors, k: int) -> np.ndarray:
    """The top-k scores exact search owes: float64 products of the forward index's float weights."""
    q_weight = dict(zip(q.indices.tolist(), q.values.astype(np.float64).tolist()))
    scores = []
    for d in range(index.num_docs):
        lo, hi = index.forward_indptr[d], index.forward_indptr[d + 1]
        shared = [(q_weight[t], w) for t, w in zip(index.forward_terms[lo:hi].tolist(), index.forward_weights[lo:hi].tolist()) if t in q_weight]
        if shared:
            scores.append(sum(a * float(b) for a, b in shared))
    return np.sort(np.array([s for s in scores if s > 0]))[::-1][:k]


def check_hits(index: SparseIndex, hits, k: int) -> None:
    rows, scores = np.asarray(hits.rows), np.asarray(hits.scores)
    assert rows.shape == scores.shape and rows.size <= k, "more hits than k"
    assert rows.size == 0 or (rows.min() >= 0 and rows.max() < index.num_docs), "a hit outside the documents"
    assert np.unique(rows).size == rows.size, "a document twice"
    assert np.isfinite(scores).all() and np.all(np.diff(scores) <= 0), "scores not finite and descending"


def search_all(index: SparseIndex, queries: SparseVectors, exact: bool = False) -> None:
    modes = ["exact", "exhaustive"] + (["approx"] if index.approx is not None else [])
    mask = np.zeros(index.num_docs, dtype=bool)
    mask[::3] = True
    for k in K:
        for mode in modes:
            for threads in (1, 2):
                for allowed in (None, mask):
                    batch = index.search(queries, k, mode=mode, threads=threads, allowed=allowed)
                    single = [index.search(queries.take([i]), k, mode=mode, allowed=allowed)[0] for i in range(len(queries))]
                    for hits in batch + single:
                        check_hits(index, hits, min(k, index.num_docs))
        if not exact or not isinstance(index, SparseIndex):
            continue  # damage may leave impacts and float weights disagreeing: only the clean index owes the floats' top-k
        prepared = index.prepare(queries)
        for mode in ("exhaustive", "exact"):
            for i, hits in enumerate(index.search(queries, k, mode=mode)):
                expected = brute_force(index, prepared.take([i]), min(k, index.num_docs))
                assert np.allclose(hits.scores, expected, rtol=1e-6), f"{mode} differs from the float64 brute force"


def replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


class CollectionView:
    """A collection opened read-only, searched as its newest generation (segments, deletions)."""

    def __init__(self, path: Path) -> None:
        self.snapshot = Collection.open(path).snapshot()
        self.vocab, self.num_docs = self.snapshot.vocab, sum(ix.num_docs for ix in self.snapshot.indexes)  # rows, deleted too
        self.approx = True if "approx" in self.snapshot.parts else None

    def search(self, queries: SparseVectors, k: int, *, mode: str, threads: int = 1, allowed=None):
        if allowed is not None:  # one mask per segment
            ends = np.cumsum([ix.num_docs for ix in self.snapshot.indexes])
            allowed = np.split(allowed, ends[:-1])
        return self.snapshot.search(queries, k, mode=mode, threads=threads, allowed=allowed)


def open_collection(path: Path, verify: bool = False) -> CollectionView:
    view = CollectionView(path)
    if verify:
        for ix in view.snapshot.indexes:
            SparseIndex.load(ix.path, verify=True)
    return view


def main() -> None:
    path, n, seed, log = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    collection = len(sys.argv) > 5 and sys.argv[5] == "collection"
    rng = random.Random(seed)
    # a collection's documents (SQLite, with its own integrity) are not mutated: its index files are
    pristine = {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
                if p.is_file() and not p.name.startswith("docs.sqlite") and p.name != "write.lock"}
    load = open_collection if collection else SparseIndex.load
    # checksums cover a segment's files but not its manifest, nor a collection's bitmaps and settings
    checksummed = {name for name in pristine if Path(name).name != MANIFEST and (not collection or name.startswith("segments/"))}
    clean = load(path, verify=True)
    qrng = np.random.default_rng(seed)
    queries = SparseVectors.from_dicts(
        [{clean.vocab[t]: float(qrng.gamma(1.0)) for t in qrng.choice(len(clean.vocab), m, replace=False)}
         for m in (1, 3, 12, 40, len(clean.vocab))], clean.vocab)  # the last reads every list
    search_all(clean, queries, exact=True)
    outcomes: dict[str, int] = {}
    failures: dict[str, str] = {}  # one example per kind of failure (exception type and place)
    with open(log, "w") as out:
        for case in range(n):
            name = rng.choice(sorted(pristine))
            data, kind = mutate(pristine[name], rng, npy_data_offset(pristine[name]))
            out.write(f"case {case}: {kind} of {name}\n")
            out.flush()
            for other, content in pristine.items():  # new files: an old mapping keeps its own bytes
                if (path / other).read_bytes() != content:
                    replace(path / other, content)
            replace(path / name, data)
            changed = data != pristine[name]
            try:
                if changed and name in checksummed:
                    try:
                        load(path, verify=True)
                        raise AssertionError("verify=True loaded a changed file")
                    except LsrError:  # the checksum's error, or a structural one found first
                        pass
                try:
                    index = load(path)
                except LsrError:
                    outcome = "refused"
                else:
                    try:
                        search_all(index, queries)
                        outcome = "searched"
                    except LsrError:  # e.g. a vocab.json changed into another vocabulary
                        outcome = "refused at search"
                    del index
            except Exception as e:  # noqa: BLE001 - every other failure is reported to the parent
                out.write(traceback.format_exc())
                frame = traceback.extract_tb(e.__traceback__)[-1]
                where = f"{type(e).__name__} at {Path(frame.filename).name}:{frame.lineno}"
                failures.setdefault(where, f"case {case} ({kind} of {name}): {str(e)[:300]}")
                outcome = "failed"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    shutil.rmtree(path, ignore_errors=True)
    print(json.dumps({"cases": n, "outcomes": outcomes, "failures": failures}))


if __name__ == "__main__":
    main()
