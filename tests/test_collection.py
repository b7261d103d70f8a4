"""Living collections (issue 12): exactness of search over segments with deletions, filters,
merges, BM25 statistics across segments, format-1 directories, and the write endpoints.

The exactness tests compare against brute force that is computed here, independently of the
kernels, and compare EXACTLY (ids, order and float scores), not with a tolerance:

- Exact scores are float64 dot products of the query with the documents' float32 weights,
  added in term-id order (the forward index's). Approx scores are dot products with each
  segment's quantized impacts: a segment quantizes its documents' float32 weights with its
  own u16 scale (``round(w / scale)``), and a hit's score is ``float32(sum of query weight x
  impact) * scale``. The brute force quantizes the documents' weights (which the test keeps
  itself, not read back from the index) with each segment's scale, the one value it takes
  from the index, and checks that scale is what the segment's own weights give.
- Query weights are small integers, so every product and partial sum is an integer below
  2**24: exact in float32 whatever order the kernels add the terms in. The brute force's
  ``float(units) * scale`` is then the very float the kernels return, and ties are real
  ties, broken by the global row (segment order, then row), as the kernels promise.

Collections of the property tests live on /dev/shm when there is one: every commit fsyncs
several files, which costs ~10x more on a disk; durability is tested in
tests/test_collection_reliability.py, not here.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import httpx
import numpy as np
import pytest
from conftest import free_port, start_server, stop_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsr.data import SparseVectors
from lsr.data.filters import Columns, check_filter, evaluate
from lsr.errors import DataError, IndexFormatError, LsrError
from lsr.index import SparseIndex
from lsr.index.approx import ApproxSettings
from lsr.index.build import quantization_scale, quantize
from lsr.retrieval import Retriever
from lsr.retrieval import collection as collection_module
from lsr.retrieval.collection import Collection, upgrade

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ADI = SHARED / "adi"
needs_adi = pytest.mark.skipif(not (ADI / "corpus.jsonl").is_file(),
                               reason=f"ADI not found at {ADI} (../shared/data is absent): the BM25 test needs its texts")

# approx with every posting kept and no pruning at query time scores every matching document
NO_PRUNING = ApproxSettings(n_postings=None)
EXACT_MODES = (("exact", {}), ("exhaustive", {}), ("approx", {"query_cut": 65536, "heap_factor": 0.0}))


@contextlib.contextmanager
def fast_dir():
    """A scratch directory on tmpfs when there is one (see the module docstring)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    root = Path(tempfile.mkdtemp(prefix="lsr-collection-test-", dir=base))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- brute force --------------------------------------------------------------------------
def live_rows(snap):
    """(global row, segment position, row, id) of every live row, in global row order."""
    out = []
    for s, (ix, dead) in enumerate(zip(snap.indexes, snap.deleted)):
        for r, doc_id in enumerate(ix.doc_ids):
            if dead is None or not dead[r]:
                out.append((snap.offset(s) + r, s, r, doc_id))
    return out


def stored_vector(ix, r) -> dict[str, float]:
    lo, hi = int(ix.forward_indptr[r]), int(ix.forward_indptr[r + 1])
    return {ix.vocab[int(t)]: float(w) for t, w in zip(ix.forward_terms[lo:hi], ix.forward_weights[lo:hi])}


def as_float32(vec: dict[str, float]) -> dict[str, float]:
    return {t: float(np.float32(w)) for t, w in vec.items() if w > 0}


def brute_force(snap, docs: dict[str, dict[str, float]], query: dict[str, int], k: int, allowed: set[str] | None = None,
                quantized: bool = False):
    """Top-k (ids, scores) over the live rows of ``snap`` whose id is in ``allowed`` (all if
    None), from the test's own copy of the documents' weights: their float32 values summed in
    float64 in term-id order (what exact search promises), or, ``quantized``, quantized per
    segment (what approx search scores)."""
    hits = []
    for row, s, _, doc_id in live_rows(snap):
        if allowed is not None and doc_id not in allowed:
            continue
        scale = snap.indexes[s].scale
        units, score = 0, 0.0
        for term, w in sorted(docs[doc_id].items(), key=lambda tw: snap.vocab.index(tw[0])):
            if term in query and w > 0:
                units += int(query[term]) * int(quantize(np.array([w], np.float32), scale, np.uint16)[0])
                score += float(query[term]) * float(np.float32(w))
        assert units < 2**24  # exact in float32: see the module docstring
        if units > 0:
            hits.append((-(float(units) * scale if quantized else score), row, doc_id))
    hits.sort()
    return [h[2] for h in hits[:k]], [-h[0] for h in hits[:k]]


def check_segments_hold(snap, docs: dict[str, dict[str, float]]) -> None:
    """The snapshot's live rows are exactly ``docs`` (each once, with its weights), and every
    segment's scale is the one its own weights give (what the brute force relies on)."""
    rows = live_rows(snap)
    ids = [r[3] for r in rows]
    assert len(ids) == len(set(ids)), f"a live id appears twice: {ids}"
    assert set(ids) == set(docs), f"live ids {sorted(ids)} != expected {sorted(docs)}"
    assert snap.num_docs == len(docs)
    for _, s, r, doc_id in rows:
        assert stored_vector(snap.indexes[s], r) == as_float32(docs[doc_id]), doc_id
    for ix in snap.indexes:
        weights = np.asarray(ix.forward_weights)
        assert ix.scale == quantization_scale(float(weights.max()) if weights.size else 0.0, np.uint16)


def assert_search_exact(retriever, snap, docs, queries, k, allowed=None, flt=None, modes=EXACT_MODES):
    """Every exact-by-contract mode, batched and one query at a time, equals the brute force."""
    for mode, knobs in modes:
        expected = [brute_force(snap, docs, q, k, allowed, quantized=mode == "approx") for q in queries]
        got = retriever.search_batch(queries, k, mode=mode, filter=flt, **knobs)
        for q, res, (ids, scores) in zip(queries, got, expected):
            assert (res.ids, res.scores) == (ids, scores), f"mode {mode}, query {q}, k {k}, filter {flt}"
        one = retriever.search_batch(queries[:1], k, mode=mode, threads=1, filter=flt, **knobs)[0]
        assert (one.ids, one.scores) == expected[0], f"mode {mode} (one query), query {queries[0]}, filter {flt}"


# ---- 1. interleaved writes vs brute force over the live documents -------------------------
IDS = [f"d{i}" for i in range(10)]
TERMS = [f"t{i}" for i in range(6)]
# repeated weights make ties (equal impacts); as 2.0 is the largest, most segments share one
# scale, so scores tie across segments too (the tie order is then the global row order)
weights_st = st.one_of(st.sampled_from([0.5, 1.0, 2.0, 2.0]), st.floats(0.015625, 2.0, width=32))
vector_st = st.dictionaries(st.sampled_from(TERMS), weights_st, max_size=4)
batch_st = st.lists(st.tuples(st.sampled_from(IDS), vector_st), min_size=1, max_size=3, unique_by=lambda d: d[0])
op_st = st.one_of(
    st.tuples(st.just("add"), batch_st),
    st.tuples(st.just("upsert"), batch_st),
    st.tuples(st.just("delete"), st.lists(st.sampled_from(IDS + ["never-added"]), min_size=1, max_size=3)),
    st.tuples(st.just("commit"), st.booleans()),
    st.tuples(st.just("commit"), st.booleans()),
    st.tuples(st.just("optimize"), st.sampled_from([1, 2])),
)
query_st = st.dictionaries(st.sampled_from(TERMS + ["not-a-term"]), st.integers(1, 3), min_size=1, max_size=4)


class LiveModel:
    """What the collection should hold: committed live documents (id -> (vector, commit
    number), in insertion order) and what is buffered."""

    def __init__(self) -> None:
        self.live: dict[str, tuple[dict, int]] = {}
        self.pending: dict[str, dict] = {}
        self.deletes: set[str] = set()
        self.commits = 0

    def add(self, batch, upsert: bool) -> str | None:
        """Buffer ``batch``; returns the id that makes a plain add fail (nothing is buffered then)."""
        if not upsert:
            taken = [i for i, _ in batch if i in self.pending or (i in self.live and i not in self.deletes)]
            if taken:
                return taken[0]
        for doc_id, vec in batch:
            self.pending[doc_id] = vec
        return None

    def delete(self, ids) -> dict[str, list[str]]:
        deleted, missing = [], []
        for doc_id in dict.fromkeys(ids):
            found = self.pending.pop(doc_id, None) is not None
            if doc_id in self.live and doc_id not in self.deletes:
                self.deletes.add(doc_id)
                found = True
            (deleted if found else missing).append(doc_id)
        return {"deleted": deleted, "not_found": missing}

    def commit(self) -> bool:
        changed = bool(self.pending or self.deletes)
        if changed:
            self.commits += 1
        for doc_id in self.deletes | set(self.pending):
            self.live.pop(doc_id, None)
        for doc_id, vec in self.pending.items():
            self.live[doc_id] = (vec, self.commits)
        self.pending, self.deletes = {}, set()
        return changed

    def docs(self) -> dict[str, dict]:
        return {i: v for i, (v, _) in self.live.items()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=st.lists(op_st, min_size=1, max_size=40), merge_factor=st.sampled_from([2, 3, 8]), data=st.data())
def test_interleaved_writes_search_equals_brute_force_over_live_docs(ops, merge_factor, data):
    with fast_dir() as root, mock.patch.object(collection_module, "MERGE_FACTOR", merge_factor):
        c = Collection.create(root / "c", model=None, approx=NO_PRUNING)
        r = Retriever(c)
        model = LiveModel()
        generation = c.snapshot().generation
        try:
            for op in [*ops, ("commit", True)]:
                kind = op[0]
                if kind in ("add", "upsert"):
                    refused = model.add(op[1], upsert=kind == "upsert")
                    docs = [{"id": i, "vector": v} for i, v in op[1]]
                    if refused is not None:
                        with pytest.raises(DataError, match="exists already"):
                            c.add(docs)
                    else:
                        assert (c.upsert(docs) if kind == "upsert" else c.add(docs)) == len(docs)
                elif kind == "delete":
                    assert c.delete(op[1]) == model.delete(op[1])
                else:
                    changed = model.commit()
                    new_gen = c.commit(merge=op[1]) if kind == "commit" else c.optimize(max_segments=op[1])
                    assert new_gen >= generation + int(changed), "a commit with changes publishes a new generation"
                    generation = new_gen
                    snap = c.snapshot()
                    assert snap.generation == generation
                    if kind == "optimize":
                        assert len(snap.indexes) <= op[1]
                        if op[1] == 1 and snap.indexes:
                            assert snap.num_rows == snap.num_docs, "optimize to one segment leaves no deleted rows"
                    docs = model.docs()
                    check_segments_hold(snap, docs)
                    # documents of earlier commits come first (segment order = commit order)
                    order = [model.live[row[3]][1] for row in live_rows(snap)]
                    assert order == sorted(order)
                    for doc_id in IDS:
                        assert (c.get(doc_id) is not None) == (doc_id in docs), doc_id
                    assert c.info()["num_docs"] == len(docs) and c.info()["deleted_docs"] == snap.num_rows - len(docs)
                    queries = data.draw(st.lists(query_st, min_size=1, max_size=3))
                    k = data.draw(st.integers(1, 12))
                    assert_search_exact(r, snap, docs, queries, k)
                assert c.pending == len(model.pending) + len(model.deletes)
            # a separate reader sees the same generation and the same hits
            reader = Collection.open(root / "c")
            try:
                snap = reader.snapshot()
                assert snap.generation == generation
                assert_search_exact(Retriever(reader), snap, model.docs(), [{t: 1 for t in TERMS}], len(IDS))
            finally:
                reader.close()
        finally:
            c.close()


def test_k_live_hits_come_back_despite_tombstones(tmp_path):
    """The best matches deleted: the next k live ones fill the list (deletions are applied in
    the kernels, not by dropping hits afterwards), in every mode."""
    c = Collection.create(tmp_path / "c", model=None, approx=NO_PRUNING)
    docs = {f"d{i}": {"x": float(100 - i), "y": 1.0} for i in range(60)}
    c.add([{"id": i, "vector": v} for i, v in docs.items()])
    c.commit()
    deleted = [f"d{i}" for i in range(0, 40)]  # the 40 best for "x"
    assert c.delete(deleted) == {"deleted": deleted, "not_found": []}
    c.commit()
    live = {i: v for i, v in docs.items() if i not in deleted}
    snap = c.snapshot()
    for mode, knobs in EXACT_MODES:
        res = Retriever(c).search_batch([{"x": 1}], 10, mode=mode, **knobs)[0]
        assert res.ids == [f"d{i}" for i in range(40, 50)], mode
    assert_search_exact(Retriever(c), snap, live, [{"x": 1}, {"x": 2, "y": 3}], 25)
    c.close()


def test_add_checks_the_whole_batch_first(tmp_path):
    c = Collection.create(tmp_path / "c", model=None)
    c.add([{"id": "a", "vector": {"x": 1.0}}])
    with pytest.raises(DataError, match="document 1"):
        c.add([{"id": "b", "vector": {"x": 1.0}}, {"id": "a\tb", "vector": {"x": 1.0}}])
    with pytest.raises(DataError, match="repeats document 0"):
        c.add([{"id": "c", "vector": {"x": 1.0}}, {"id": "c", "vector": {"y": 1.0}}])
    with pytest.raises(DataError, match="exists already"):
        c.add([{"id": "d", "vector": {"x": 1.0}}, {"id": "a", "vector": {"x": 1.0}}])
    with pytest.raises(DataError, match="no model"):
        c.add([{"id": "e", "text": "a text needs a model"}])
    assert c.pending == 1  # only "a"
    c.commit()
    assert [c.get(i) is not None for i in "abcde"] == [True, False, False, False, False]
    c.close()


def test_bm25_collection_refuses_vectors(tmp_path):
    """A BM25 weight depends on the collection: a ready vector cannot be one (it used to be
    stored silently as an empty document)."""
    c = Collection.create(tmp_path / "c", model="bm25")
    with pytest.raises(DataError, match="document 1.*text"):
        c.add([{"id": "t", "text": "some words"}, {"id": "v", "vector": {"words": 1.0}}])
    assert c.pending == 0
    c.close()


# ---- 2. filters -----------------------------------------------------------------------------
_MISSING = object()
_RANGES = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def _lookup(meta, path):
    v = meta
    for part in path.split("."):
        v = v.get(part, _MISSING) if isinstance(v, dict) else _MISSING
    return _MISSING if v is None else v  # null is absence


def _json_equal(a, b) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _equal_any(v, values) -> bool:
    if isinstance(v, list):  # a list matches when an element does
        return any(_json_equal(item, x) for item in v for x in values)
    return any((v is _MISSING) if x is None else (v is not _MISSING and _json_equal(v, x)) for x in values)


def reference_match(flt, meta) -> bool:
    """The filter language as lsr.data.filters documents it, written plainly, one document at a time."""
    for key, value in flt.items():
        if key == "and":
            ok = all(reference_match(f, meta) for f in value)
        elif key == "or":
            ok = any(reference_match(f, meta) for f in value)
        elif key == "not":
            ok = not reference_match(value, meta)
        else:
            v = _lookup(meta, key)
            ok = True
            for op, arg in (value if isinstance(value, dict) else {"eq": value}).items():
                if op == "exists":
                    ok &= (v is not _MISSING) == arg
                elif op in ("eq", "in"):
                    ok &= _equal_any(v, [arg] if op == "eq" else arg)
                elif op in ("ne", "nin"):  # a missing field matches no comparison, ne and nin included
                    ok &= v is not _MISSING and not _equal_any(v, [arg] if op == "ne" else arg)
                else:
                    ok &= any(_is_number(x) and _RANGES[op](x, arg) for x in (v if isinstance(v, list) else [v]))
        if not ok:
            return False
    return True


scalar_st = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from([0.5, 1.0, -1.5]),
                      st.sampled_from(["", "x", "y", "1"]))
meta_value_st = st.one_of(scalar_st, st.lists(scalar_st, max_size=3))
metadata_st = st.fixed_dictionaries({}, optional={
    "a": meta_value_st, "b": meta_value_st, "tags": st.lists(scalar_st, max_size=3),
    "o": st.one_of(scalar_st, st.fixed_dictionaries({}, optional={"x": meta_value_st, "y": scalar_st})),
})
number_st = st.one_of(st.integers(-2, 2), st.sampled_from([0.5, -1.5, 1.0]))
condition_st = st.one_of(
    scalar_st,
    st.fixed_dictionaries({"eq": scalar_st}),
    st.fixed_dictionaries({"ne": scalar_st}),
    st.fixed_dictionaries({"in": st.lists(scalar_st, max_size=3)}),
    st.fixed_dictionaries({"nin": st.lists(scalar_st, max_size=3)}),
    st.dictionaries(st.sampled_from(list(_RANGES)), number_st, min_size=1, max_size=2),
    st.fixed_dictionaries({"exists": st.booleans()}),
)
leaf_filter_st = st.builds(lambda f, cond: {f: cond}, st.sampled_from(["a", "b", "tags", "o", "o.x", "o.y", "missing"]), condition_st)
filter_st = st.recursive(leaf_filter_st, lambda sub: st.one_of(
    st.builds(lambda fs: {"and": fs}, st.lists(sub, min_size=1, max_size=3)),
    st.builds(lambda fs: {"or": fs}, st.lists(sub, min_size=1, max_size=3)),
    st.builds(lambda f: {"not": f}, sub),
    st.builds(lambda f, g: {**f, **g}, sub, sub),  # several keys in one object: all must hold
), max_leaves=6)
doc_st = st.tuples(st.dictionaries(st.sampled_from(TERMS[:4]), weights_st, max_size=3), metadata_st)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(docs=st.lists(doc_st, min_size=1, max_size=24), filters=st.lists(filter_st, min_size=1, max_size=4), data=st.data())
def test_filtered_search_equals_brute_force_over_filtered_live_set(docs, filters, data):
    # every document shares the term "all", so {"all": 1} with a large k lists the whole allowed set
    vectors = {f"d{i}": {"all": 1.0, **vec} for i, (vec, _) in enumerate(docs)}
    meta = {f"d{i}": m for i, (_, m) in enumerate(docs)}
    ids = list(vectors)
    with fast_dir() as root:
        c = Collection.create(root / "c", model=None, approx=NO_PRUNING)
        try:
            half = len(ids) // 2
            for part in (ids[:half], ids[half:]):
                if part:
                    c.add([{"id": i, "vector": vectors[i], "metadata": meta[i]} for i in part])
                    c.commit()
            gone = data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=len(ids) // 3))
            changed = data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=3))
            c.delete(gone)
            new_meta = {}
            for i in changed:  # updates: new metadata (and weights), in a later segment
                new_meta[i] = data.draw(metadata_st)
                vectors[i] = {"all": 1.0, **data.draw(doc_st)[0]}
            if changed:
                c.upsert([{"id": i, "vector": vectors[i], "metadata": new_meta[i]} for i in changed])
            c.commit()
            meta.update(new_meta)
            live = {i: vectors[i] for i in ids if i not in gone or i in changed}
            snap = c.snapshot()
            check_segments_hold(snap, live)
            for i in live:
                assert c.get(i).metadata == meta[i]
            r = Retriever(c)
            for flt in filters:
                allowed = {i for i in live if reference_match(flt, meta[i])}
                everything = r.search_batch([{"all": 1}], len(ids) + 1, filter=flt)[0]
                assert set(everything.ids) == allowed, f"filter {flt}"
                queries = [{"all": 1}, *data.draw(st.lists(query_st, min_size=1, max_size=2))]
                assert_search_exact(r, snap, live, queries, data.draw(st.integers(1, 8)), allowed, flt)
        finally:
            c.close()


def test_selective_filter_in_approx_mode_scores_exactly(tmp_path):
    """A filter keeping < 2% of a segment switches approx mode to exact scoring of the allowed
    rows (from the forward index): even with pruning knobs, the filtered top-k is exact."""
    rng = np.random.default_rng(7)
    c = Collection.create(tmp_path / "c", model=None, approx=ApproxSettings())
    vectors = {f"d{i}": {f"t{j}": float(rng.integers(1, 40)) / 8 for j in rng.choice(12, 4, replace=False)} for i in range(300)}
    meta = {i: {"group": "rare" if n % 100 == 7 else "common", "n": n} for n, i in enumerate(vectors)}
    c.add([{"id": i, "vector": v, "metadata": meta[i]} for i, v in vectors.items()])
    c.commit()
    r, snap = Retriever(c), c.snapshot()
    queries = [{f"t{j}": int(rng.integers(1, 4)) for j in rng.choice(12, 3, replace=False)} for _ in range(5)]
    for flt in ({"group": "rare"}, {"n": {"lt": 3}}, {"and": [{"group": "common"}, {"n": {"gte": 295}}]}):
        allowed = {i for i in vectors if reference_match(flt, meta[i])}
        assert 0 < len(allowed) < 0.02 * len(vectors)
        assert_search_exact(r, snap, vectors, queries, 5, allowed, flt,
                            modes=(("approx", {"query_cut": 1, "heap_factor": 1.0}), ("approx", {})))
    c.close()


FILTER_DOCS = [
    {"n": 1}, {"n": True}, {"n": 1.0}, {"n": "1"}, {}, {"n": None}, {"n": [1, "x"]}, {"n": [True]},
    {"o": {"n": 2, "deep": {"k": "v"}}}, {"o": 5},
]


@pytest.mark.parametrize("flt, expected", [
    ({"n": 1}, [0, 2, 6]),  # 1 == 1.0 (JSON numbers), a list matches by an element; true is not 1, "1" is not 1
    ({"n": True}, [1, 7]),
    ({"n": "1"}, [3]),
    ({"n": {"ne": 1}}, [1, 3, 7]),  # present and different: missing fields match no comparison
    ({"n": {"nin": [1, "x"]}}, [1, 3, 7]),
    ({"n": {"gte": 1}}, [0, 2, 6]),  # booleans and strings are not numbers
    ({"n": {"gt": 0, "lt": 1.5}}, [0, 2, 6]),
    ({"n": {"gt": 1}}, []),
    ({"n": {"exists": False}}, [4, 5, 8, 9]),  # null is absence
    ({"n": {"exists": True}}, [0, 1, 2, 3, 6, 7]),
    ({"n": None}, [4, 5, 8, 9]),
    ({"n": {"in": [True, "1"]}}, [1, 3, 7]),
    ({"o.n": 2}, [8]),  # dotted paths into nested objects
    ({"o.deep.k": "v"}, [8]),
    ({"o.n": {"exists": True}}, [8]),
    ({"o": {"exists": True}}, [8, 9]),
    ({"o.n": {"lt": 10}, "n": {"exists": False}}, [8]),
    ({"not": {"n": 1}}, [1, 3, 4, 5, 7, 8, 9]),
    ({"or": [{"n": True}, {"o.n": {"lt": 3}}]}, [1, 7, 8]),
    ({"and": [{"n": {"exists": True}}, {"not": {"n": {"in": [1, True]}}}]}, [3]),
])
def test_filter_semantics_edge_cases(flt, expected):
    columns = Columns(enumerate(FILTER_DOCS), len(FILTER_DOCS))
    assert np.flatnonzero(evaluate(check_filter(flt), columns)).tolist() == expected
    assert [i for i, m in enumerate(FILTER_DOCS) if reference_match(flt, m)] == expected  # the reference agrees


@pytest.mark.parametrize("flt, place", [
    ({}, "filter"),
    ([{"a": 1}], "filter"),
    ({"and": []}, "filter.and"),
    ({"and": [{"a": 1}, {"b": {"gt": "x"}}]}, "filter.and[1].b.gt"),
    ({"or": [{"a": {"bogus": 1}}]}, "filter.or[0].a.bogus"),
    ({"not": {"a": {"in": 3}}}, "filter.not.a.in"),
    ({"not": []}, "filter.not"),
    ({"a": {"exists": 1}}, "filter.a.exists"),
    ({"a": {}}, "filter.a"),
    ({"a": [1, 2]}, "filter.a"),  # a list is not a value to equal: "in" is
    ({"a": {"gte": True}}, "filter.a.gte"),
    ({"a": {"lt": float("nan")}}, "filter.a.lt"),
    ({"a": {"eq": {"x": 1}}}, "filter.a.eq"),
    ({"x": {"in": [[1]]}}, "filter.x.in"),
    ({"": 1}, "filter."),
])
def test_bad_filters_name_the_place(flt, place):
    with pytest.raises(DataError) as e:
        check_filter(flt)
    assert str(e.value).startswith(place + ":"), str(e.value)


def test_bad_filter_through_the_retriever(tmp_path):
    c = Collection.create(tmp_path / "c", model=None)
    c.add([{"id": "a", "vector": {"x": 1.0}, "metadata": {"year": 2001}}])
    c.commit()
    with pytest.raises(DataError, match=r"^filter\.year\.gte:"):
        Retriever(c).search_batch([{"x": 1}], 3, filter={"year": {"gte": "2000"}})
    assert Retriever(c).search_batch([{"x": 1}], 3, filter={"year": {"gte": 2000}})[0].ids == ["a"]
    c.close()


# ---- 3. optimize == a fresh build -----------------------------------------------------------
def random_vectors(rng, n, terms=40):
    return [{f"w{j}": float(np.float32(rng.lognormal(0, 1))) for j in rng.choice(terms, int(rng.integers(1, 9)), replace=False)}
            for _ in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimize_equals_fresh_build_of_live_docs(tmp_path, seed):
    rng = np.random.default_rng(seed)
    c = Collection.create(tmp_path / "c", model=None, approx=ApproxSettings())
    live: dict[str, dict] = {}  # in order: what a fresh build would take

    def add(docs: dict[str, dict], upsert=False):
        (c.upsert if upsert else c.add)([{"id": i, "vector": v} for i, v in docs.items()])
        for i, v in docs.items():
            live.pop(i, None)
            live[i] = v

    add(dict(zip([f"a{i}" for i in range(40)], random_vectors(rng, 40))))
    c.commit()
    add(dict(zip([f"b{i}" for i in range(30)], random_vectors(rng, 30))))
    c.commit()
    gone = list(rng.choice(sorted(live), 15, replace=False))
    c.delete(gone)
    for i in gone:
        live.pop(i)
    replaced = list(rng.choice(sorted(live), 5, replace=False)) + [f"u{i}" for i in range(5)]
    add(dict(zip(replaced, random_vectors(rng, 10))), upsert=True)
    c.commit()
    add(dict(zip([f"c{i}" for i in range(10)], random_vectors(rng, 10))))
    committed_b = next(i for i in live if i.startswith("b"))
    report = c.delete(["c3", "c7", committed_b, "never"])
    assert report["not_found"] == ["never"]
    for i in report["deleted"]:
        live.pop(i)
    assert len(c.snapshot().indexes) >= 3
    c.optimize()

    snap = c.snapshot()
    assert len(snap.indexes) == 1 and snap.deleted[0] is None
    merged = snap.indexes[0]
    assert merged.doc_ids == list(live)
    vocab = list(c.vocab())
    fresh = SparseIndex.build(SparseVectors.from_dicts(list(live.values()), vocab), list(live), approx=ApproxSettings())
    assert merged.scale == fresh.scale
    for name in ("postings_indptr", "postings_docs", "postings_impacts", "forward_indptr", "forward_terms", "forward_weights"):
        assert np.array_equal(np.asarray(getattr(merged, name)), np.asarray(getattr(fresh, name))), name
    queries = [{f"w{j}": float(rng.uniform(0.1, 3)) for j in rng.choice(40, int(rng.integers(1, 6)), replace=False)} for _ in range(30)]
    for mode in ("exact", "exhaustive", "approx"):
        for k in (10, len(live)):
            got = Retriever(c).search_batch(queries, k, mode=mode)
            want = Retriever(fresh).search_batch(queries, k, mode=mode)
            assert [(g.ids, g.scores) for g in got] == [(w.ids, w.scores) for w in want], (mode, k)
    c.close()


def test_optimize_rewrites_a_lone_segment_with_deletions(tmp_path):
    """One segment holding deletions still carries the deleted documents' quantization scale:
    optimize must rewrite it to equal a fresh build (it used to leave it alone)."""
    c = Collection.create(tmp_path / "c", model=None)
    c.add([{"id": "big", "vector": {"x": 4.0}}, {"id": "small", "vector": {"x": 1.0}}])
    c.commit()
    c.delete(["big"])
    c.optimize()
    assert c.info()["deleted_docs"] == 0
    assert Retriever(c).search({"x": 1.0}).scores == [1.0]  # a fresh build of "small" alone: scale 1/65535, impact 65535
    c.close()


# ---- 4. BM25 statistics across segments -------------------------------------------------------
def write_corpus(path: Path, docs) -> Path:
    path.write_text("".join(json.dumps({"_id": d["_id"], "title": d.get("title", ""), "text": d["text"],
                                        **({"metadata": d["metadata"]} if d.get("metadata") else {})}) + "\n" for d in docs))
    return path


def assert_same_ranking(got, want, rtol=1e-5):
    """Equal ids and scores up to float rounding (term ids, hence the order of additions, may
    differ): a pair of ids may swap only where their scores tie within the tolerance."""
    assert len(got.ids) == len(want.ids)
    np.testing.assert_allclose(got.scores, want.scores, rtol=rtol)
    want_score = dict(zip(want.ids, want.scores))
    for i, (a, b) in enumerate(zip(got.ids, want.ids)):
        if a != b:
            assert a in want_score and np.isclose(want_score[a], got.scores[i], rtol=rtol), (i, a, b)


@needs_adi
def test_bm25_inserts_deletes_then_optimize_equal_fresh_build(tmp_path):
    from lsr.pipeline import build_index

    corpus = [json.loads(line) for line in (ADI / "corpus.jsonl").read_text().splitlines() if line.strip()]
    queries = [json.loads(line)["text"] for line in (ADI / "queries.jsonl").read_text().splitlines() if line.strip()]
    live: dict[str, dict] = {}
    first = corpus[:30]
    build_index(tmp_path / "c", corpus=write_corpus(tmp_path / "part.jsonl", first), model="bm25", show_progress_bar=False)
    live.update((d["_id"], d) for d in first)
    c = Collection.open(tmp_path / "c", writable=True)
    as_doc = lambda d: {"id": d["_id"], "title": d.get("title", ""), "text": d["text"]}  # noqa: E731

    for lo, hi in ((30, 45), (45, 60)):
        c.add([as_doc(d) for d in corpus[lo:hi]])
        live.update((d["_id"], d) for d in corpus[lo:hi])
        c.commit()
    gone = [corpus[i]["_id"] for i in (0, 5, 17, 31, 40, 44, 50, 59)]
    assert c.delete(gone)["not_found"] == []
    for i in gone:
        live.pop(i)
    changed = [dict(corpus[i], text=corpus[i]["text"] + " retrieval of information by computer") for i in (3, 33, 52)]
    c.upsert([as_doc(d) for d in changed])
    for d in changed:
        live.pop(d["_id"])
        live[d["_id"]] = d
    c.commit()
    for lo, hi in ((60, 70), (70, len(corpus))):
        c.add([as_doc(d) for d in corpus[lo:hi]])
        live.update((d["_id"], d) for d in corpus[lo:hi])
        c.commit()
    assert len(c.snapshot().indexes) > 1
    before = Retriever(c).search_batch(queries, len(corpus))
    for res in before:  # over several segments: deleted documents never come back
        assert not set(res.ids) & {i for i in gone if i not in live}
    c.delete([corpus[64]["_id"], corpus[80]["_id"]])
    for i in (64, 80):
        live.pop(corpus[i]["_id"])
    c.optimize()

    fresh, _ = build_index(tmp_path / "fresh", corpus=write_corpus(tmp_path / "live.jsonl", live.values()), model="bm25",
                           show_progress_bar=False)
    snap = c.snapshot()
    assert len(snap.indexes) == 1 and snap.indexes[0].doc_ids == list(live) == fresh.doc_ids
    merged, rebuilt = snap.indexes[0], fresh.index
    for r in range(len(live)):  # every document's BM25 weights, term by term
        a, b = stored_vector(merged, r), stored_vector(rebuilt, r)
        assert a.keys() == b.keys(), merged.doc_ids[r]
        np.testing.assert_allclose([a[t] for t in a], [b[t] for t in a], rtol=1e-5, err_msg=merged.doc_ids[r])
    got = Retriever(c).search_batch(queries, len(live))
    want = fresh.search_batch(queries, len(live))
    assert sum(len(w.ids) for w in want) > 0
    for g, w in zip(got, want):
        assert_same_ranking(g, w)
    c.close()


# ---- 5. format 1 --------------------------------------------------------------------------
def test_format_1_opens_read_only_and_upgrades(tmp_path):
    rng = np.random.default_rng(3)
    docs = random_vectors(rng, 50)
    ids = [f"doc{i}" for i in range(50)]
    path = SparseIndex.build(SparseVectors.from_dicts(docs), ids, approx=True).save(tmp_path / "f1")
    assert not (path / "collection.json").exists()
    queries = [{f"w{j}": float(rng.uniform(0.1, 2)) for j in rng.choice(40, 3, replace=False)} for _ in range(10)]

    def results(source):
        r = Retriever(source)
        return [[(h.ids, h.scores) for h in r.search_batch(queries, 10, mode=m)] for m in ("exact", "exhaustive", "approx")]

    reference = results(SparseIndex.load(path))
    old = Collection.open(path)
    assert not old.writable
    assert results(old) == reference
    assert Retriever.load(path).search_batch(queries, 10)[0].ids == reference[0][0][0]
    with pytest.raises(LsrError, match="read-only"):
        old.add([{"id": "x", "vector": {"w1": 1.0}}])
    with pytest.raises(DataError, match="upgrade"):
        Retriever(old).search_batch(queries, 3, filter={"a": 1})
    with pytest.raises(IndexFormatError, match="lsr upgrade"):
        Collection.open(path, writable=True)
    old.close()

    assert upgrade(path) == path
    assert (path / "collection.json").is_file()
    new = Collection.open(path)
    assert new.info()["generation"] == 1 and new.info()["num_docs"] == 50
    assert results(new) == reference
    new.close()
    w = Collection.open(path, writable=True)
    w.add([{"id": "added", "vector": {"w1": 100.0, "brand-new-term": 1.0}, "metadata": {"new": True}}])
    w.commit()
    r = Retriever(w)
    assert r.search({"w1": 1.0}, 1).ids == ["added"]
    assert r.search({"brand-new-term": 1.0}, 5).ids == ["added"]
    assert r.search_batch([{"w1": 1.0}], 5, filter={"new": True})[0].ids == ["added"]
    assert w.get("added").metadata == {"new": True} and w.get(ids[0]) is not None
    w.close()


def test_format_1_bm25_refuses_upgrade_clearly(tmp_path):
    """A format-1 BM25 index stores no texts or lengths: as a collection its statistics would
    be wrong (adding a document used to fail with 'document weights must be finite')."""
    from lsr.encoders import load_encoder

    enc = load_encoder("bm25")
    texts = ["the cat sat on the mat", "dogs chase cats", "sparse retrieval", "a mat for a cat"]
    path = SparseIndex.build(enc.encode_documents(texts), ["a", "b", "c", "d"], model="bm25",
                             encoder_settings=enc.settings()).save(tmp_path / "f1")
    before = Retriever(Collection.open(path)).search("cat mat", 4)
    assert before.ids
    with pytest.raises(IndexFormatError, match="rebuild it from the corpus"):
        upgrade(path)
    assert not (path / "collection.json").exists()
    assert Retriever(Collection.open(path)).search("cat mat", 4) == before


# ---- 6. REST ------------------------------------------------------------------------------
DOCS = [
    {"id": "p1", "title": "Sparse retrieval", "text": "Learned sparse retrieval with inverted indexes and impacts.",
     "metadata": {"year": 2021, "lang": "en", "tags": ["ir", "sparse"]}},
    {"id": "p2", "title": "Dense retrieval", "text": "Dense retrieval encodes queries and documents as vectors.",
     "metadata": {"year": 2020, "lang": "en", "tags": ["ir", "dense"]}},
    {"id": "p3", "title": "Recherche", "text": "La recherche d'information avec des index inverses sparse retrieval.",
     "metadata": {"year": 2019, "lang": "fr"}},
    {"id": "p4", "title": "Cooking", "text": "A recipe for bread with flour, water and salt.", "metadata": {"year": 2022}},
]


@pytest.fixture
def bm25_dir(tmp_path) -> Path:
    Collection.create(tmp_path / "c", model="bm25").close()
    return tmp_path / "c"


def rest_client(path, **options):
    from fastapi.testclient import TestClient

    from lsr.service.app import Limits, create_app

    limits = Limits(commit_docs=options.pop("commit_docs", 1000), commit_ms=options.pop("commit_ms", 60_000))
    return TestClient(create_app(path, writable=True, limits=limits, **options))


def pending(client) -> dict:
    return client.get("/stats").json()["index"]["pending"]


def test_rest_documents_commit_get_delete_and_filtered_search(bm25_dir):
    with rest_client(bm25_dir) as client:
        out = client.post("/documents", json={"documents": DOCS})
        assert out.status_code == 200, out.text
        assert out.json() | {"generation": None} == {"accepted": 4, "pending": 4, "generation": None, "committed": False}
        assert client.get("/documents/p1").status_code == 404  # buffered, not committed
        assert client.post("/search", json={"query": "sparse retrieval"}).json()["ids"] == []
        committed = client.post("/commit").json()
        assert committed["num_docs"] == 4 and committed["generation"] > out.json()["generation"]
        got = client.get("/documents/p1").json()
        assert got == {"id": "p1", "title": DOCS[0]["title"], "text": DOCS[0]["text"], "metadata": DOCS[0]["metadata"]}

        body = {"query": "sparse retrieval", "k": 10, "filter": {"lang": "en", "year": {"gte": 2020}},
                "fields": ["title", "text", "metadata"], "snippet": 12}
        hits = client.post("/search", json=body).json()
        assert hits["ids"] == ["p1", "p2"]  # p3 (fr, 2019) matches the query but not the filter
        assert hits["fields"][0] == {"title": DOCS[0]["title"][:12], "text": DOCS[0]["text"][:12], "metadata": DOCS[0]["metadata"]}
        unfiltered = client.post("/search", json={"query": "sparse retrieval", "k": 10}).json()
        assert "p3" in unfiltered["ids"] and unfiltered["fields"] is None
        batch = client.post("/search/batch", json={"queries": [{"query": "retrieval"}, {"query": "bread"}], "k": 10,
                                                   "filter": {"tags": "dense"}, "fields": ["text"]}).json()
        assert [r["ids"] for r in batch["results"]] == [["p2"], []]
        assert batch["results"][0]["fields"] == [{"text": DOCS[1]["text"]}]

        # an upsert with ?commit=true answers after its commit
        new = {"id": "p2", "text": "Completely rewritten about bread", "metadata": {"year": 2024}}
        out = client.post("/documents?commit=true", json={"documents": [new]}).json()
        assert out["committed"] is True and out["pending"] == 0
        assert client.get("/documents/p2").json() == {"id": "p2", "title": "", "text": new["text"], "metadata": {"year": 2024}}
        assert client.post("/search", json={"query": "bread", "filter": {"year": 2024}}).json()["ids"] == ["p2"]
        assert "p2" not in client.post("/search", json={"query": "dense vectors"}).json()["ids"]

        out = client.delete("/documents/p1", params={"commit": "true"})
        assert out.status_code == 200 and out.json()["deleted"] == ["p1"] and out.json()["committed"] is True
        assert client.get("/documents/p1").status_code == 404
        assert "p1" not in client.post("/search", json={"query": "sparse retrieval"}).json()["ids"]
        assert client.delete("/documents/p1").status_code == 404
        out = client.post("/documents/delete", json={"ids": ["p3", "nope", "p1"]}).json()
        assert out["deleted"] == ["p3"] and out["not_found"] == ["nope", "p1"] and out["pending"] == 1 and not out["committed"]
        assert client.get("/documents/p3").status_code == 200  # until the commit
        client.post("/commit")
        assert client.get("/documents/p3").status_code == 404
        assert client.get("/health").json()["num_docs"] == 2


@pytest.mark.parametrize("bad, where", [
    ({"id": "x", "text": 5}, "documents.2.text"),
    ({"id": "x", "title": ["a"], "text": "t"}, "documents.2.title"),
    ({"id": "tab\there", "text": "t"}, "documents.2.id"),
    ({"text": "no id"}, "documents.2.id"),
    ({"id": "x", "text": "both", "vector": {"both": 1.0}}, "documents.2"),
    ({"id": "x", "text": "t", "metadata": [1, 2]}, "documents.2.metadata"),
    ({"id": "x", "text": "t", "metadata": "json text"}, "documents.2.metadata"),
    ({"id": "x", "vector": {"t": -1.0}}, "documents.2.vector"),
    ({"id": "x", "vector": {"t": 1.0}}, "document 2"),  # a BM25 collection takes texts only
    ({"id": "x", "text": "t", "extra": 1}, "documents.2.extra"),
])
def test_rest_bad_document_refuses_the_whole_batch(bm25_dir, bad, where):
    with rest_client(bm25_dir) as client:
        client.post("/documents?commit=true", json={"documents": [DOCS[3]]})
        batch = [{"id": "good1", "text": "fine text"}, {"id": "p4", "text": "an update of p4"}, bad]
        out = client.post("/documents", json={"documents": batch})
        assert out.status_code == 422, out.text
        assert where in out.json()["error"]["message"], out.json()
        assert pending(client) == {"docs": 0, "deletes": 0}
        client.post("/commit")
        assert client.get("/documents/good1").status_code == 404
        assert client.get("/documents/p4").json()["text"] == DOCS[3]["text"]


def test_rest_auto_commit_after_n_documents(bm25_dir):
    with rest_client(bm25_dir, commit_docs=3) as client:
        out = client.post("/documents", json={"documents": DOCS[:2]}).json()
        assert out["committed"] is False and out["pending"] == 2
        assert client.get("/documents/p1").status_code == 404
        out = client.post("/documents/delete", json={"ids": ["p1"]}).json()  # a buffered doc un-buffered: 1 change left
        assert out["deleted"] == ["p1"] and out["pending"] == 1 and not out["committed"]
        out = client.post("/documents", json={"documents": DOCS[2:4]}).json()
        assert out["committed"] is True and out["pending"] == 0
        assert [client.get(f"/documents/{d['id']}").status_code for d in DOCS] == [404, 200, 200, 200]


def test_rest_auto_commit_after_t_ms(bm25_dir):
    with rest_client(bm25_dir, commit_ms=150) as client:
        start = time.monotonic()
        out = client.post("/documents", json={"documents": DOCS[:1]}).json()
        assert out["committed"] is False
        while client.get("/documents/p1").status_code != 200:
            assert time.monotonic() - start < 15, "no automatic commit after commit_ms"
            time.sleep(0.05)
        assert pending(client) == {"docs": 0, "deletes": 0}
        assert client.post("/search", json={"query": "sparse"}).json()["ids"] == ["p1"]


def test_rest_writes_need_the_key_even_with_public_reads(bm25_dir):
    with rest_client(bm25_dir, api_key="s3cret", public_reads=True) as client:
        key = {"X-API-Key": "s3cret"}
        writes = [("post", "/documents", {"json": {"documents": DOCS[:1]}}), ("post", "/documents?commit=true", {"json": {"documents": DOCS[:1]}}),
                  ("delete", "/documents/p1", {}), ("post", "/documents/delete", {"json": {"ids": ["p1"]}}), ("post", "/commit", {})]
        for method, url, kw in writes:
            assert getattr(client, method)(url, **kw).status_code == 401, url
            assert getattr(client, method)(url, headers={"X-API-Key": "wrong"}, **kw).status_code == 401, url
        assert pending(client) == {"docs": 0, "deletes": 0}
        assert client.post("/documents?commit=true", json={"documents": DOCS[:1]}, headers=key).status_code == 200
        # reads stay public
        assert client.post("/search", json={"query": "sparse"}).json()["ids"] == ["p1"]
        assert client.get("/documents/p1").status_code == 200
        assert client.delete("/documents/p1", headers=key).status_code == 200


def test_serve_refuses_public_writes_without_a_key(bm25_dir, monkeypatch):
    import uvicorn

    from lsr.service.server import serve

    monkeypatch.delenv("LSR_API_KEY", raising=False)
    monkeypatch.setenv("LSR_SERVE_CONFIG", "{}")  # serve() writes its config there: restored afterwards
    bound = mock.Mock(side_effect=AssertionError("serve got as far as starting uvicorn"))
    monkeypatch.setattr(uvicorn, "run", bound)
    for workers in (1, 2):
        with pytest.raises(LsrError, match="LSR_API_KEY"):
            serve(bm25_dir, host="0.0.0.0", writable=True, workers=workers)
    with pytest.raises(LsrError, match="one writer"):
        serve(bm25_dir, host="127.0.0.1", writable=True, workers=2)
    assert not bound.called
    monkeypatch.setenv("LSR_API_KEY", "s3cret")  # with a key, the same call gets to uvicorn
    with pytest.raises(AssertionError, match="starting uvicorn"):
        serve(bm25_dir, host="0.0.0.0", writable=True)


# ---- 7. the README session against a real server ---------------------------------------------
README = Path(__file__).resolve().parents[1] / "README.md"
README_PORT, README_INDEX = "8000", "indexes/adi-live"


def readme_session() -> list[str]:
    """The shell commands of the README's writable-server session, one per entry (a curl whose
    JSON spans lines is one command; a comment line is kept: it states an expected output)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    block = next((b for b in blocks if "--writable" in b and "curl" in b), None)
    assert block is not None, f"{README} shows no curl session against `lsr serve --writable`"
    commands, current = [], ""
    for line in block.splitlines():
        current = f"{current}\n{line}" if current else line
        try:
            shlex.split(current, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        if not current.endswith("\\"):
            commands.append(current.strip())
            current = ""
    return [c for c in commands if c]


def lsr_args(command: str, index: Path, port: int) -> list[str]:
    """`lsr ...` of the README as this test runs it: the index in tmp, a free port, no `&`."""
    words = shlex.split(command.replace(README_INDEX, str(index)), comments=True)
    assert words[0] == "lsr", command
    words = [w for w in words if w != "&"]
    return [str(port) if w == README_PORT and words[i - 1] == "--port" else w for i, w in enumerate(words)][1:]


def expected_output(command: str) -> str | None:
    """What a ``# -> ...`` comment says the command prints."""
    m = re.search(r"#\s*->\s*(.+)$", command.splitlines()[-1])
    return m.group(1).strip() if m else None


def check_output(out: str, expected: str, command: str) -> None:
    """The output matches the README's comment: the same text, or for JSON the same values of
    every key the comment spells out (``[...]`` and ``...`` stand for what it leaves out)."""
    if not expected.startswith("{"):
        assert out.strip() == expected, f"README says {command!r} prints {expected!r}; it printed {out!r}"
        return
    spelled = json.loads(expected.replace("[...]", "null").replace(", ...}", "}"))
    got = json.loads(out)
    for key, value in spelled.items():
        if value is not None:
            assert got.get(key) == value, f"README says {command!r} gives {key}={value!r}; got {got.get(key)!r}"



class Server:
    """`lsr serve` processes this test starts (one at a time), stopped by their PID."""

    def __init__(self, log: Path) -> None:
        self.log, self.proc, self.base = log, None, None

    def start(self, args: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if k != "LSR_API_KEY"}
        self.proc, self.base = start_server([*args, "--no-access-log"], self.log, env=env)

    def stop(self) -> None:
        if self.proc is not None:
            stop_server(self.proc)
        self.proc = None


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed: the README session is curl commands")
@needs_adi
def test_readme_curl_session_against_a_real_server(tmp_path):
    """Run the README's session as written (its `lsr` commands on a tmp index and a free
    port, `kill %1` as a stop by PID): each `# -> ...` it shows must be what comes out."""
    commands = readme_session()
    index, port, server = tmp_path / "adi-live", free_port(), Server(tmp_path / "server.log")
    ran = {"index": 0, "serve": 0, "curl": 0, "checked": 0}
    last = prev = None
    try:
        for command in commands:
            if command.startswith("#"):  # "# -> output" of the command before
                check_output(last, expected_output(command), prev)
                ran["checked"] += 1
                continue
            steps = [command] if command.startswith("curl") else re.split(r"\s*(?:&&|;)\s*", command.split("#")[0])
            for part in steps:
                part = part.strip()
                if part.startswith("kill %1"):
                    server.stop()
                elif part.startswith("lsr index"):
                    proc = subprocess.run([sys.executable, "-m", "lsr.cli", *lsr_args(part, index, port)], capture_output=True,
                                          text=True, timeout=600)
                    assert proc.returncode == 0, proc.stderr
                    ran["index"] += 1
                elif part.startswith("lsr serve"):
                    server.start(lsr_args(part, index, port))
                    ran["serve"] += 1
                elif part.startswith("curl"):
                    line = part.replace("\\\n", " ").replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{port}")  # bash's line continuation
                    words = shlex.split(line, comments=True)
                    proc = subprocess.run(words, capture_output=True, text=True, timeout=60)
                    assert proc.returncode == 0, f"{part}: {proc.stderr}"
                    last, prev = proc.stdout, part
                    ran["curl"] += 1
                    if expected_output(part) is not None:
                        check_output(last, expected_output(part), part)
                        ran["checked"] += 1
                elif part:
                    pytest.fail(f"the README session has a step this test does not know: {part!r}")
        # the session is the issue's: add, a filtered search with the text back, a delete, a restart
        assert ran["index"] == 1 and ran["serve"] == 2 and ran["curl"] >= 4 and ran["checked"] >= 2, ran
        added = [json.loads(c[c.index("-d '") + 4 : c.rindex("'")]) for c in commands if "/documents?commit=true" in c]
        assert len(added) == 1, "the session adds its documents in one committed POST /documents"
        gone = re.search(r"DELETE '?http://[^/]+/documents/([^?' ]+)", "\n".join(commands)).group(1)
        kept = [d["id"] for d in added[0]["documents"] if d["id"] != gone]
        assert kept and server.base is not None
        for doc_id in kept:  # the restart kept what was added and not deleted
            assert httpx.get(f"{server.base}/documents/{doc_id}", timeout=10).status_code == 200
        assert httpx.get(f"{server.base}/documents/{gone}", timeout=10).status_code == 404
    finally:
        server.stop()


def test_rest_an_id_twice_in_a_batch_is_its_last_occurrence(bm25_dir):
    """As a bulk request of OpenSearch: the batch is accepted and the later document is stored."""
    with rest_client(bm25_dir) as client:
        out = client.post("/documents?commit=true", json={"documents": [
            {"id": "x", "text": "first version"}, {"id": "y", "text": "other"}, {"id": "x", "text": "second version"}]})
        assert out.status_code == 200, out.text
        assert out.json()["accepted"] == 2
        assert client.get("/documents/x").json()["text"] == "second version"


def test_rest_errors_name_what_is_missing_and_every_allowed_method(bm25_dir):
    with rest_client(bm25_dir) as client:
        missing = client.get("/documents/nope")
        assert missing.status_code == 404 and missing.json()["error"]["message"] == "no document 'nope'"
        assert client.get("/no/such/path").json()["error"]["message"] == "no endpoint at /no/such/path"
        one = client.request("OPTIONS", "/documents/p1")  # two routes share the path: GET and DELETE
        assert one.status_code == 405 and one.headers["allow"] == "DELETE, GET"
        literal = client.request("OPTIONS", "/documents/delete")  # a literal path, not a document id
        assert literal.status_code == 405 and literal.headers["allow"] == "POST"
        spec = client.get("/openapi.json").json()
        for path, ops in (("/documents/{doc_id}", ("get", "delete")),):
            for op in ops:
                assert "404" in spec["paths"][path][op]["responses"], (path, op)
