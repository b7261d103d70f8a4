"""Exact search equals a brute-force scorer; storage is atomic, versioned and verified.

The tests search through a :class:`Retriever` (string ids, ``{term: weight}`` queries) and, where
the numeric layer itself is under test, through its :class:`SparseIndex` directly."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsr.data import SparseVectors
from lsr.errors import DataError, IndexFormatError
from lsr.index.build import raised_warning
from lsr.index import storage
from lsr.index.storage import MANIFEST
from lsr.index import SparseIndex
from lsr.index.approx import ApproxSettings
from lsr.retrieval import Retriever

VOCAB = [f"t{i}" for i in range(12)]


def brute_force(rows: list[dict[str, float]], query: dict[str, float], k: int):
    """Reference top-k written independently of the index: float64 dense products of the float32
    weights the index keeps (exact search is exact on the float vectors, whatever the impacts).

    Returns (positions, scores) ranked by score desc then position asc, docs with no shared
    term excluded.
    """
    weights = np.zeros((len(rows), len(VOCAB)))
    for i, r in enumerate(rows):
        for t, w in r.items():
            weights[i, VOCAB.index(t)] = np.float32(w)
    q = np.zeros(len(VOCAB))
    for t, w in query.items():
        q[VOCAB.index(t)] = np.float32(w)
    scores = weights @ q
    matched = (weights[:, q > 0] > 0).any(axis=1)
    order = [i for i in np.lexsort((np.arange(len(rows)), -scores)) if matched[i]][:k]
    return order, scores[order]


def build(rows, quantization="u16", block_size=64, reorder="none"):
    vecs = SparseVectors.from_dicts(rows, VOCAB)
    return Retriever.build(vecs, [f"d{i}" for i in range(len(rows))], quantization=quantization, block_size=block_size, reorder=reorder)


LAYOUTS = st.sampled_from([(64, "none"), (4, "none"), (3, "dominant"), (1, "dominant")])
MODES = ("exact", "exhaustive")


small_weights = st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
doc_rows = st.lists(st.dictionaries(st.sampled_from(VOCAB), small_weights, max_size=6), min_size=1, max_size=40)
int_query = st.dictionaries(st.sampled_from(VOCAB), st.integers(0, 4).map(float), max_size=6)


@settings(max_examples=200, deadline=None)
@given(rows=doc_rows, query=int_query, k=st.integers(1, 45), layout=LAYOUTS)
def test_exact_search_equals_brute_force_with_ties(rows, query, k, layout):
    """Few distinct weights make many exact ties; ranking must match including the tie-break
    by internal id (the reordered position when documents are reordered)."""
    index = build(rows, block_size=layout[0], reorder=layout[1])
    position = {doc_id: i for i, doc_id in enumerate(index.doc_ids)}
    expected, expected_scores = brute_force(rows, query, k)
    # the reference ranks ties by original position; map them to the index's internal order
    full, full_scores = brute_force(rows, query, len(rows))
    ranked = sorted(zip(full_scores, full), key=lambda p: (-p[0], position[f"d{p[1]}"]))[:k]
    for mode in MODES:
        for result in (index.search(query, k, mode=mode), index.search_batch([query, {}], k, mode=mode)[0]):
            assert result.ids == [f"d{i}" for _, i in ranked]
            np.testing.assert_allclose(result.scores, expected_scores, rtol=1e-6)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.dictionaries(st.sampled_from(VOCAB), st.floats(0, 5, width=32), max_size=8), min_size=1, max_size=60),
    query=st.dictionaries(st.sampled_from(VOCAB), st.floats(0, 3, width=32), max_size=8),
    k=st.integers(1, 20),
    quantization=st.sampled_from(["u8", "u16"]),
    layout=LAYOUTS,
)
def test_exact_search_is_a_true_top_k_on_random_floats(rows, query, k, quantization, layout):
    """With arbitrary floats, near-ties may order differently in float32: check it is a valid top-k."""
    index = build(rows, quantization, *layout)
    expected, expected_scores = brute_force(rows, query, k)
    reference = dict(zip(*brute_force(rows, query, len(rows))))
    for mode in MODES:
        result = index.search(query, k, mode=mode)
        assert len(result) == len(expected)
        np.testing.assert_allclose(result.scores, expected_scores, rtol=1e-5, atol=1e-6)
        for doc_id, score in zip(result.ids, result.scores):
            assert reference[int(doc_id[1:])] == pytest.approx(score, rel=1e-5, abs=1e-6)
        assert len(set(result.ids)) == len(result.ids)


def test_tie_in_a_later_block_with_an_equal_bound_wins_by_lower_id():
    """Block 1 (bound 2) is visited first and yields d2 (score 1); block 0's bound equals that
    score and holds d0 with the same score and a lower id: safe pruning must still visit it."""
    index = build([{"t1": 1.0}, {}, {"t1": 1.0}, {"t2": 1.0}], block_size=2)
    for mode in MODES:
        assert index.search({"t1": 1.0, "t2": 1.0}, 1, mode=mode).ids == ["d0"]


def test_batch_equals_single_on_real_sized_random_data():
    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(500)]
    rows = [{vocab[t]: float(rng.gamma(1.0)) for t in rng.choice(500, rng.integers(0, 60), replace=False)} for _ in range(3000)]
    index = Retriever.build(SparseVectors.from_dicts(rows, vocab), [str(i) for i in range(3000)])
    queries = [{vocab[t]: float(rng.random()) for t in rng.choice(500, 12, replace=False)} for _ in range(50)]
    for mode in MODES:
        single = [index.search(q, k=100, mode=mode) for q in queries]
        for threads in (1, 2):
            assert index.search_batch(queries, k=100, threads=threads, mode=mode) == single
    assert single == [index.search(q, k=100) for q in queries]  # exhaustive == block-max pruning


def _recall(found, truth) -> float:
    """Mean recall@k of ``found`` against the exact top-k ``truth`` (queries with hits only)."""
    return float(np.mean([len(set(f.ids) & set(t.ids)) / len(t.ids) for f, t in zip(found, truth) if t.ids]))


def test_alpha_beta_pruning_recall_against_exact_search():
    """BMP's alpha (block pruning) and beta (query-term pruning), measured against exhaustive
    search over 50 queries: safe at 1/1, recall above stated floors when pruning, and what is
    returned is ranked consistently with true scores."""
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(300)]
    rows = [{vocab[t]: float(rng.gamma(1.0)) for t in rng.choice(300, 30, replace=False)} for _ in range(2000)]
    index = Retriever.build(SparseVectors.from_dicts(rows, vocab), [str(i) for i in range(2000)], block_size=16, reorder="dominant")
    queries = [{vocab[t]: float(rng.random()) for t in rng.choice(300, 20, replace=False)} for _ in range(50)]
    k = 50
    truth = index.search_batch(queries, k, mode="exhaustive")
    full = [dict(zip(r.ids, r.scores)) for r in index.search_batch(queries, 2000, mode="exhaustive")]

    safe = index.search_batch(queries, k, alpha=1.0, beta=1.0)
    assert _recall(safe, truth) == 1.0
    assert safe == truth  # same ids, order and scores

    def check_ranked(results, reference):
        for r, ref in zip(results, reference):
            assert len(r) == k and len(set(r.ids)) == k
            assert r.scores == sorted(r.scores, reverse=True)
            assert set(r.ids) <= set(ref)  # only documents that match the (kept) terms
            np.testing.assert_allclose(r.scores, [ref[d] for d in r.ids], rtol=1e-6)

    # alpha < 1 prunes whole blocks; every score it returns is the document's exact score
    recalls = {}
    for alpha, floor in ((0.5, 0.95), (0.3, 0.6)):
        found = index.search_batch(queries, k, alpha=alpha, strategy="blockmax")
        check_ranked(found, full)
        recalls[alpha] = _recall(found, truth)
        assert floor <= recalls[alpha] <= 1.0, (alpha, recalls[alpha])
    assert recalls[0.3] < 1.0 and recalls[0.3] <= recalls[0.5]  # the knob does prune, more as it falls

    # beta < 1 keeps the heaviest ceil(beta * n) query terms: scores are those of that pruned
    # query (never above the full query's), and with alpha = 1 it is its exact top-k
    def pruned(q: dict[str, float], beta: float) -> dict[str, float]:
        keep = int(np.ceil(beta * len(q)))
        return dict(sorted(q.items(), key=lambda tw: -np.float32(tw[1]))[:keep])

    for alpha, beta, floor in ((1.0, 0.5, 0.7), (0.7, 0.5, 0.7)):
        found = index.search_batch(queries, k, alpha=alpha, beta=beta, strategy="blockmax")
        pruned_full = [dict(zip(r.ids, r.scores)) for r in index.search_batch([pruned(q, beta) for q in queries], 2000, mode="exhaustive")]
        check_ranked(found, pruned_full)
        assert all(s <= f[d] * (1 + 1e-6) for r, f in zip(found, full) for d, s in zip(r.ids, r.scores))
        if alpha == 1.0:
            assert found == index.search_batch([pruned(q, beta) for q in queries], k, mode="exhaustive")
            assert index.search_batch(queries, k, mode="exhaustive", beta=beta) == found
        recall = _recall(found, truth)
        assert floor <= recall < 1.0, (alpha, beta, recall)


def test_search_knobs_and_modes_are_validated():
    index = build([{"t1": 1.0}, {"t2": 1.0}])
    for bad, message in (({"alpha": 0.0}, "alpha must be in"), ({"beta": 1.5}, "beta must be in"), ({"alpha": -1}, "alpha must be in"),
                         ({"alpha": "x"}, "alpha must be a number")):
        with pytest.raises(ValueError, match=message):
            index.search({"t1": 1.0}, 5, **bad)
    with pytest.raises(ValueError, match="unknown mode 'fast'"):
        index.search({"t1": 1.0}, 5, mode="fast")
    with pytest.raises(ValueError, match="mode 'exhaustive' has no knob 'alpha'"):
        index.search({"t1": 1.0}, 5, mode="exhaustive", alpha=0.5)
    with pytest.raises(ValueError, match="mode 'exact' has no knob 'heap_factor'"):
        index.index.search(index.encode_queries([{"t1": 1.0}]), 5, mode="exact", heap_factor=0.5)


def test_empty_query_and_empty_docs():
    index = build([{"t1": 1.0}, {}, {"t2": 2.0}])
    assert index.info()["empty_docs"] == 1
    assert index.search({}, 5).ids == []
    assert index.search({"t1": 0.0}, 5).ids == []
    assert index.search({"unknown-term": 1.0}, 5).ids == []
    assert index.search({"t1": 1.0, "t2": 1.0}, 5).ids == ["d2", "d0"]


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        build([{"t1": 1.0}]).search({"t1": 1.0}, k)


def test_k_larger_than_corpus_returns_all_matches():
    assert len(build([{"t1": 1.0}, {"t1": 2.0}]).search({"t1": 1.0}, 1000)) == 2


def test_bad_build_input():
    vecs = SparseVectors.from_dicts([{"t1": 1.0}, {"t2": 1.0}], VOCAB)
    with pytest.raises(DataError, match="not unique"):
        SparseIndex.build(vecs, ["a", "a"])
    with pytest.raises(DataError, match="2 vectors"):
        SparseIndex.build(vecs, ["a"])
    with pytest.raises(ValueError, match="quantization must be one of"):
        SparseIndex.build(vecs, ["a", "b"], quantization="u4")
    with pytest.raises(DataError, match="must be finite and >= 0"):
        SparseVectors.from_dicts([{"t1": -1.0}], VOCAB)


@pytest.mark.parametrize("indptr, indices, n_values", [
    ([0, 1, 3], [0, len(VOCAB), 1], 3),  # a term id past the vocabulary
    ([0, 1, 3], [0, -1, 1], 3),  # a negative term id
    ([0, 2, 1], [0, 1, 2], 3),  # offsets that decrease
    ([0, 1, 4], [0, 1, 2], 3),  # offsets past the entries
    ([0, 1, 3], [0, 1, 2], 2),  # a weight missing
])
def test_malformed_rows_are_a_clear_error_before_any_kernel_reads_them(indptr, indices, n_values):
    vecs = SparseVectors(np.array(indptr), np.array(indices, np.int32), np.ones(n_values, np.float32), VOCAB)
    with pytest.raises(DataError, match="sparse rows are malformed"):
        SparseIndex.build(vecs, ["a", "b"])


@pytest.mark.parametrize("row", [[1, 1], [2, 1]])
def test_rows_with_repeated_or_unsorted_terms_are_rejected(row):
    # A repeated term would be scored twice from the postings but bounded once by the block
    # maxima, so block-max pruning could skip a winner: refuse such rows up front.
    indices = np.array([0, 3, *row, 0, 2], dtype=np.int32)
    vecs = SparseVectors(np.array([0, 2, 4, 6]), indices, np.ones(6, np.float32), VOCAB)
    with pytest.raises(DataError, match=f"document 1: .*term {VOCAB[1]!r}"):
        SparseIndex.build(vecs, ["a", "b", "c"])
    ok = SparseVectors(np.array([0, 2, 2, 4]), np.array([0, 3, 0, 2], np.int32), np.ones(4, np.float32), VOCAB)
    assert SparseIndex.build(ok, ["a", "b", "c"]).num_docs == 3  # a row may start lower than the last one ended


def test_quantization_error_is_reported_and_bounded():
    rows = [{"t1": 0.123456, "t2": 3.5}, {"t1": 2.0}]
    for quantization, qmax in (("u8", 255), ("u16", 65535)):
        info = build(rows, quantization).info()
        assert 0 < info["max_quantization_error"] <= 3.5 / qmax / 2 + 1e-9


def test_weights_below_half_a_step_are_never_dropped_and_a_coarse_scale_is_refused():
    # one outlier weight of 100 sets the u8 step at 0.39: 400 of 401 weights would round to 0
    outlier = [{"t2": 100.0}, *({"t1": 0.05, "t3": 0.1} for _ in range(200))]
    ids = [str(i) for i in range(len(outlier))]
    coarse = SparseIndex.build(SparseVectors.from_dicts(outlier, VOCAB), ids, quantization="u8")
    assert coarse.info()["raised_postings"] == 400 and int((coarse.postings_impacts > 0).sum()) == 401
    assert "400 of 401 weights (99.8%) were below half a u8 impact step" in raised_warning(coarse.manifest["stats"], "u8")
    fine = SparseIndex.build(SparseVectors.from_dicts(outlier, VOCAB), ids, quantization="u16")
    assert fine.info()["raised_postings"] == 0 and raised_warning(fine.manifest["stats"], "u16") is None
    # one tiny weight among many: kept as one impact unit, reported, found by a query for its term
    rows = [{"t1": 0.001, "t2": 3.0}, *({"t2": 1.0 + i / 100, "t4": 2.0} for i in range(60))]
    vecs = SparseVectors.from_dicts(rows, VOCAB)
    before = vecs.to_dicts()
    index = Retriever.build(vecs, [str(i) for i in range(len(rows))], quantization="u8", reorder="dominant")
    assert vecs.to_dicts() == before
    assert index.info()["raised_postings"] == 1 and index.search({"t1": 1.0}, 5).ids == ["0"]
    sparse = index.index
    forward = {sparse.doc_ids[d]: {VOCAB[t]: float(w) for t, w in zip(
        sparse.forward_terms[sparse.forward_indptr[d]:sparse.forward_indptr[d + 1]],
        sparse.forward_weights[sparse.forward_indptr[d]:sparse.forward_indptr[d + 1]])} for d in range(len(rows))}
    assert forward == {str(i): pytest.approx(row) for i, row in enumerate(rows)}
    assert int((sparse.postings_impacts > 0).sum()) == vecs.nnz  # every posting is there


def test_save_load_roundtrip(tmp_path):
    index = build([{"t1": 1.0, "t3": 0.5}, {"t3": 2.0}, {}])
    index.save(tmp_path / "idx")
    loaded = Retriever.load(tmp_path / "idx", verify=True)
    assert isinstance(loaded.index.postings_docs, np.memmap)
    assert loaded.doc_ids == index.doc_ids and loaded.vocab == index.vocab
    assert loaded.search({"t3": 1.0}, 3) == index.search({"t3": 1.0}, 3)
    info = loaded.info()
    assert info["num_docs"] == 3 and info["num_postings"] == 3 and info["bytes"] > 0
    assert info["settings"]["quantization"] == "u16"


def test_an_index_saved_without_posting_weights_derives_them(tmp_path):
    """Indexes written before postings carried float weights still load: the weights are the
    forward index's, transposed, and exact search returns what it did."""
    rows = [{"t1": 1.0, "t3": 0.5}, {"t3": 2.0, "t2": 0.25}, {}, {"t0": 0.0, "t1": 3.0}]
    index = build(rows)
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / MANIFEST).read_text())
    del manifest["files"]["postings_weights.npy"]
    (tmp_path / "idx" / MANIFEST).write_text(json.dumps(manifest))
    (tmp_path / "idx" / "postings_weights.npy").unlink()
    loaded = Retriever.load(tmp_path / "idx", verify=True)
    assert loaded.index.postings_weights.tolist() == index.index.postings_weights.tolist() == [1.0, 3.0, 0.25, 0.5, 2.0]
    assert loaded.search({"t1": 1.0, "t3": 1.0}, 3) == index.search({"t1": 1.0, "t3": 1.0}, 3)


def test_explain_contributions_sum_to_score():
    index = build([{"t1": 1.0, "t3": 0.5, "t4": 1.0}, {"t3": 2.0}])
    query = {"t1": 2.0, "t3": 1.0, "t5": 1.0}
    result = index.search(query, 1)
    terms = index.explain(query, result.ids[0])
    assert [t["term"] for t in terms] == ["t1", "t3"]
    assert sum(t["contribution"] for t in terms) == pytest.approx(result.scores[0], rel=1e-6)
    with pytest.raises(DataError, match="unknown document id"):
        index.explain(query, "nope")


def test_text_query_without_model_is_a_clear_error():
    with pytest.raises(DataError, match="this index records no query encoder"):
        build([{"t1": 1.0}]).search("some text")


def test_interrupted_save_keeps_the_previous_index(tmp_path, monkeypatch):
    good = build([{"t1": 1.0}])
    good.save(tmp_path / "idx")
    calls = {"n": 0}
    real_write = storage._write_npy

    def failing_write(*args, **kwargs):  # the third array file
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(storage, "_write_npy", failing_write)
    with pytest.raises(OSError, match="disk full"):
        build([{"t2": 1.0}, {"t2": 2.0}]).save(tmp_path / "idx")
    monkeypatch.undo()
    assert Retriever.load(tmp_path / "idx", verify=True).doc_ids == ["d0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temporary left behind


def test_save_refuses_to_overwrite_a_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(IndexFormatError, match="not an lsr index; refusing"):
        build([{"t1": 1.0}]).save(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_load_errors(tmp_path):
    with pytest.raises(IndexFormatError, match="no index directory"):
        Retriever.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="not an lsr index"):
        Retriever.load(tmp_path / "empty")
    path = build([{"t1": 1.0}]).save(tmp_path / "idx")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="format version 99, newer than this lsr reads"):
        Retriever.load(path)


def test_verify_detects_damage(tmp_path):
    path = build([{"t1": 1.0}, {"t1": 2.0}]).save(tmp_path / "idx")
    data = bytearray((path / "postings_impacts.npy").read_bytes())
    data[-1] ^= 0xFF
    (path / "postings_impacts.npy").write_bytes(bytes(data))
    Retriever.load(path)  # cheap load does not read everything
    with pytest.raises(IndexFormatError, match="does not match its checksum"):
        Retriever.load(path, verify=True)
    (path / "vocab.json").unlink()
    with pytest.raises(IndexFormatError, match="incomplete: missing vocab.json"):
        Retriever.load(path)


# ---- query rows the numeric layer is given directly ------------------------------------------
NO_PRUNING = {"query_cut": 65536, "heap_factor": 0.0}
ALL_MODES = (("exact", {}), ("exhaustive", {}), ("approx", NO_PRUNING))


def sparse_with_approx(rows) -> SparseIndex:
    vecs = SparseVectors.from_dicts(rows, VOCAB)
    return SparseIndex.build(vecs, [f"d{i}" for i in range(len(rows))], block_size=2, approx=ApproxSettings(n_postings=None))


def raw_queries(rows: list[list[tuple[int, float]]], vocab=VOCAB) -> SparseVectors:
    """Query rows exactly as given: term ids may repeat, be unsorted or lie outside the vocabulary."""
    indptr = np.cumsum([0] + [len(r) for r in rows])
    terms = np.array([t for r in rows for t, _ in r], dtype=np.int32)
    weights = np.array([w for r in rows for _, w in r], dtype=np.float32)
    return SparseVectors(indptr, terms, weights, vocab)


@pytest.mark.parametrize("bad_term", [len(VOCAB), len(VOCAB) + 100, -1])
def test_query_term_ids_outside_the_vocabulary_are_refused(bad_term):
    rows = [{"t1": 1.0, "t2": 0.5}, {"t2": 2.0}, {"t3": 1.0}]
    sparse = sparse_with_approx(rows)
    retriever = Retriever(sparse)
    for queries in (raw_queries([[(1, 1.0), (bad_term, 1.0)]]), raw_queries([[(1, 1.0)], [(2, 1.0), (bad_term, 0.5)]])):
        for mode, knobs in ALL_MODES:
            with pytest.raises(DataError, match=f"query term id {bad_term} is outside the vocabulary"):
                sparse.search(queries, 3, mode=mode, **knobs)
            with pytest.raises(DataError, match=f"query term id {bad_term} is outside the vocabulary"):
                retriever.search_encoded(queries, 3, mode=mode, **knobs)
        with pytest.raises(DataError, match="outside the vocabulary"):
            sparse.approx_work(queries, 3)
    # the same rows with the bad id left out are fine
    assert [h.rows.tolist() for h in sparse.search(raw_queries([[(1, 1.0)]]), 3)] == [[0]]


def test_queries_over_another_vocabulary_are_refused():
    sparse = sparse_with_approx([{"t1": 1.0}, {"t2": 2.0}])
    retriever = Retriever(sparse)
    shorter = SparseVectors.from_dicts([{"t1": 1.0}], VOCAB[:5])  # ids valid in both, but another vocabulary
    reordered = SparseVectors.from_dicts([{"t1": 1.0}], list(reversed(VOCAB)))  # same size, ids mean other terms
    for queries in (shorter, reordered):
        for mode, knobs in ALL_MODES:
            with pytest.raises(DataError, match="over another vocabulary"):
                sparse.search(queries, 2, mode=mode, **knobs)
            with pytest.raises(DataError, match="over another vocabulary"):
                retriever.search_encoded(queries, 2, mode=mode, **knobs)
    # an equal copy of the vocabulary is the same vocabulary
    same = SparseVectors.from_dicts([{"t1": 1.0}], list(VOCAB))
    assert sparse.search(same, 2)[0].rows.tolist() == [0]
    assert retriever.search_encoded(same, 2)[0].ids == ["d0"]


dup_weights = st.sampled_from([0.5, 1.0, 1.5, 2.0])  # sums of these are exact in float32


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.dictionaries(st.sampled_from(VOCAB), st.sampled_from([0.5, 1.0, 2.0, 3.0]), max_size=6), min_size=1, max_size=30),
    queries=st.lists(st.lists(st.tuples(st.integers(0, len(VOCAB) - 1), dup_weights), max_size=8), min_size=1, max_size=4),
    k=st.integers(1, 35),
)
def test_repeated_query_terms_are_summed_in_every_mode(rows, queries, k):
    """A query row naming a term twice (in any order) scores as the same query with the weights
    summed, identically in exact, exhaustive and (unpruned) approx search, alone or in a batch
    (approx ranks by impacts, exact by floats: each mode is compared with itself)."""
    sparse = sparse_with_approx(rows)
    summed_rows = []
    for q in queries:
        total: dict[str, float] = {}
        for t, w in q:
            total[VOCAB[t]] = total.get(VOCAB[t], 0.0) + w
        summed_rows.append(total)
    summed = SparseVectors.from_dicts(summed_rows, VOCAB)
    raw = raw_queries(queries)
    for mode, knobs in ALL_MODES:
        expected = [(h.rows.tolist(), h.scores.tolist()) for h in sparse.search(summed, k, mode=mode, **knobs)]
        batch = [(h.rows.tolist(), h.scores.tolist()) for h in sparse.search(raw, k, mode=mode, **knobs)]
        assert batch == expected, mode
        for i, q in enumerate(queries):
            one = sparse.search(raw_queries([q]), k, mode=mode, **knobs)[0]
            assert (one.rows.tolist(), one.scores.tolist()) == expected[i], mode
    retriever = Retriever(sparse)
    for mode, knobs in ALL_MODES:
        assert retriever.search_encoded(raw, k, mode=mode, **knobs) == retriever.search_batch(summed_rows, k, mode=mode, **knobs)


def test_repeated_query_terms_concrete_example():
    sparse = sparse_with_approx([{"t1": 1.0, "t3": 1.0}, {"t1": 2.0}, {"t3": 3.0}])
    repeated = raw_queries([[(3, 1.0), (1, 1.0), (1, 1.0), (3, 0.5)]])  # unsorted, each term twice
    for mode, knobs in ALL_MODES:
        (hits,) = sparse.search(repeated, 3, mode=mode, **knobs)
        # t1 weighs 2, t3 weighs 1.5: d1 = 4, d2 = 4.5, d0 = 3.5
        assert hits.rows.tolist() == [2, 1, 0], mode
        np.testing.assert_allclose(hits.scores, [4.5, 4.0, 3.5], rtol=1e-4)


@pytest.mark.parametrize("weight", [1.2e-38, 1e-44, 1e30])
def test_extreme_query_weights_rank_like_exhaustive(weight):
    """Block bounds near float32's smallest normal once overflowed the bucket scale to inf and
    wrote out of bounds (a crash at exit)."""
    index = build([{"t0": 3.8}, {"t0": 0.02, "t1": 1.0}, {"t1": 2.0}], "u8")
    expected = index.search({"t0": weight}, 2, mode="exhaustive")
    assert expected.ids == ["d0", "d1"]
    for mode in MODES:
        assert index.search({"t0": weight}, 2, mode=mode).ids == expected.ids


def test_query_weights_that_would_overflow_float32_scores_are_refused():
    index = build([{"t0": 3.8}, {"t1": 2.0}], "u16")
    for mode in MODES:
        with pytest.raises(DataError, match="keeps scores finite"):
            index.search({"t0": 3e38}, 2, mode=mode)
    # alone (prepared inside the kernel) or in a batch (by SparseIndex.prepare), in every mode
    sparse = sparse_with_approx([{"t0": 3.8}, {"t1": 2.0}])
    huge = [[(1, 2e38), (2, 2e38)]]  # each weight finite, their sum past the limit
    for queries in (raw_queries(huge), raw_queries([[(1, 1.0)]] + huge)):
        for mode, knobs in ALL_MODES:
            with pytest.raises(DataError, match="query weights sum to 4e\\+38: at most .* keeps scores finite"):
                sparse.search(queries, 2, mode=mode, **knobs)


def test_a_query_longer_than_the_first_scratch_is_searched_alone_as_in_a_batch():
    rng = np.random.default_rng(5)
    sparse = sparse_with_approx([{t: float(rng.integers(1, 5)) for t in rng.choice(VOCAB, 5, replace=False)} for _ in range(30)])
    long_row = [(int(t), float(w)) for t, w in zip(rng.integers(0, len(VOCAB), 300), rng.integers(-1, 4, 300))]
    for mode, knobs in ALL_MODES:
        batch = sparse.search(raw_queries([long_row, long_row[:3]]), 7, mode=mode, **knobs)[0]
        for _ in range(2):  # the grown scratch is reused
            one = sparse.search(raw_queries([long_row]), 7, mode=mode, **knobs)[0]
            assert (one.rows.tolist(), one.scores.tolist()) == (batch.rows.tolist(), batch.scores.tolist()), mode


def _random_vectors(rng, n_rows, vocab_size, terms_per_row):
    indptr = np.arange(n_rows + 1, dtype=np.int64) * terms_per_row
    terms = np.concatenate([np.sort(rng.choice(vocab_size, terms_per_row, replace=False)) for _ in range(n_rows)])
    weights = rng.uniform(0.1, 3.0, n_rows * terms_per_row).astype(np.float32)
    return SparseVectors(indptr, terms.astype(np.int32), weights, [f"t{i}" for i in range(vocab_size)])


@pytest.mark.parametrize(("vocab_size", "term_dtype"), [(3_000, np.uint16), (70_000, np.uint32)])
def test_ids_are_stored_narrow_and_a_format_1_index_of_wide_ids_answers_the_same(tmp_path, vocab_size, term_dtype):
    """Format 2 stores term ids, block ids and block posting offsets as narrow as they fit; a
    format-1 index, whose ids are int32 and offsets int64, loads and answers every mode and
    strategy with the same rows and scores."""
    rng = np.random.default_rng(vocab_size)
    docs = _random_vectors(rng, 400, vocab_size, 30)
    # queries over terms the documents hold, so that every strategy has postings to walk
    held = np.unique(docs.indices)
    q_terms = np.concatenate([np.sort(rng.choice(held, 6, replace=False)) for _ in range(12)])
    queries = SparseVectors(np.arange(13, dtype=np.int64) * 6, q_terms.astype(np.int32),
                            rng.uniform(0.5, 2.0, q_terms.size).astype(np.float32), docs.vocab)
    index = SparseIndex.build(docs, [f"d{i}" for i in range(400)], block_size=8, approx=ApproxSettings(n_postings=40))
    assert index.forward_terms.dtype == index.blocks.blk_terms.dtype == term_dtype
    assert index.blocks.tb_blocks.dtype == index.blocks.entry_ptr.dtype == np.uint16  # 50 blocks, 12,000 postings
    blocks = index.blocks
    wide = dataclasses.replace(index, forward_terms=index.forward_terms.astype(np.int32), blocks=dataclasses.replace(
        blocks, blk_terms=blocks.blk_terms.astype(np.int32), tb_blocks=blocks.tb_blocks.astype(np.int32),
        entry_ptr=blocks.entry_ptr.astype(np.int64)))
    old_dir = wide.save(tmp_path / "format1")
    written = json.loads((old_dir / MANIFEST).read_text())
    (old_dir / MANIFEST).write_text(json.dumps({**written, "format_version": 1}))
    old = SparseIndex.load(old_dir, verify=True)
    assert old.manifest["format_version"] == 1 and old.forward_terms.dtype == np.int32 and old.blocks.entry_ptr.dtype == np.int64
    runs = [("exhaustive", {}), ("approx", {"query_cut": 6, "heap_factor": 0.8})]
    runs += [("exact", {"strategy": s}) for s in ("blockmax", "superblock", "auto")]
    for mode, knobs in runs:
        new_hits, old_hits = index.search(queries, 10, mode=mode, **knobs), old.search(queries, 10, mode=mode, **knobs)
        assert all(len(h) for h in new_hits)  # every query term is some document's
        assert [h.rows.tolist() for h in new_hits] == [h.rows.tolist() for h in old_hits]
        assert [h.scores.tolist() for h in new_hits] == [h.scores.tolist() for h in old_hits]
