"""Exact search equals a brute-force scorer; storage is atomic, versioned and verified."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsr.data import SparseVectors
from lsr.errors import DataError, IndexFormatError
from lsr.index import Index

VOCAB = [f"t{i}" for i in range(12)]


def brute_force(rows: list[dict[str, float]], query: dict[str, float], k: int, qmax: int = 65535):
    """Reference top-k written independently of the index: dense products over quantized weights.

    Returns (positions, scores) ranked by score desc then position asc, docs with no shared
    term excluded; scores are exact integers of impact units times query weights.
    """
    top = max((w for r in rows for w in r.values()), default=0.0)
    scale = top / qmax if top > 0 else 1.0
    impacts = np.zeros((len(rows), len(VOCAB)), dtype=np.int64)
    for i, r in enumerate(rows):
        for t, w in r.items():
            impacts[i, VOCAB.index(t)] = int(np.rint(np.float64(np.float32(w)) / scale))
    q = np.zeros(len(VOCAB))
    for t, w in query.items():
        q[VOCAB.index(t)] = w
    scores = impacts @ q
    matched = (impacts[:, q > 0] > 0).any(axis=1)
    order = [i for i in np.lexsort((np.arange(len(rows)), -scores)) if matched[i]][:k]
    return order, scores[order] * scale


def build(rows, quantization="u16", block_size=64, reorder="none"):
    vecs = SparseVectors.from_dicts(rows, VOCAB)
    return Index.build(vecs, [f"d{i}" for i in range(len(rows))], quantization=quantization, block_size=block_size, reorder=reorder)


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
    qmax = 255 if quantization == "u8" else 65535
    expected, expected_scores = brute_force(rows, query, k, qmax)
    reference = dict(zip(*brute_force(rows, query, len(rows), qmax)))
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
    index = Index.build(SparseVectors.from_dicts(rows, vocab), [str(i) for i in range(3000)])
    queries = [{vocab[t]: float(rng.random()) for t in rng.choice(500, 12, replace=False)} for _ in range(50)]
    for mode in MODES:
        single = [index.search(q, k=100, mode=mode) for q in queries]
        for threads in (1, 2):
            assert index.search_batch(queries, k=100, threads=threads, mode=mode) == single
    assert single == [index.search(q, k=100) for q in queries]  # exhaustive == block-max pruning


def test_approximate_knobs_return_true_scores_and_validate():
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(300)]
    rows = [{vocab[t]: float(rng.gamma(1.0)) for t in rng.choice(300, 30, replace=False)} for _ in range(2000)]
    index = Index.build(SparseVectors.from_dicts(rows, vocab), [str(i) for i in range(2000)], block_size=16, reorder="dominant")
    query = {vocab[t]: float(rng.random()) for t in rng.choice(300, 20, replace=False)}
    exact = index.search(query, 50, mode="exhaustive")
    truth = dict(zip(exact.ids, exact.scores))
    full = dict(zip(*(lambda r: (r.ids, r.scores))(index.search(query, 2000, mode="exhaustive"))))
    for alpha, beta in ((0.8, 1.0), (1.0, 0.5), (0.7, 0.5)):
        approx = index.search(query, 50, alpha=alpha, beta=beta)
        assert len(approx) == 50 and len(set(approx.ids) & set(truth)) > 0
        if beta == 1.0:  # alpha alone prunes whole blocks; the scores it returns stay exact
            assert all(full[i] == pytest.approx(s, rel=1e-6) for i, s in zip(approx.ids, approx.scores))
    for bad in ({"alpha": 0.0}, {"beta": 1.5}, {"alpha": -1}, {"mode": "fast"}):
        with pytest.raises(ValueError, match="must be"):
            index.search(query, 5, **bad)


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
        Index.build(vecs, ["a", "a"])
    with pytest.raises(DataError, match="2 vectors"):
        Index.build(vecs, ["a"])
    with pytest.raises(ValueError, match="quantization must be one of"):
        Index.build(vecs, ["a", "b"], quantization="u4")
    with pytest.raises(DataError, match="must be finite and >= 0"):
        SparseVectors.from_dicts([{"t1": -1.0}], VOCAB)


@pytest.mark.parametrize("row", [[1, 1], [2, 1]])
def test_rows_with_repeated_or_unsorted_terms_are_rejected(row):
    # A repeated term would be scored twice from the postings but bounded once by the block
    # maxima, so block-max pruning could skip a winner: refuse such rows up front.
    indices = np.array([0, 3, *row, 0, 2], dtype=np.int32)
    vecs = SparseVectors(np.array([0, 2, 4, 6]), indices, np.ones(6, np.float32), VOCAB)
    with pytest.raises(DataError, match=f"document 1: .*term {VOCAB[1]!r}"):
        Index.build(vecs, ["a", "b", "c"])
    ok = SparseVectors(np.array([0, 2, 2, 4]), np.array([0, 3, 0, 2], np.int32), np.ones(4, np.float32), VOCAB)
    assert Index.build(ok, ["a", "b", "c"]).num_docs == 3  # a row may start lower than the last one ended


def test_quantization_error_is_reported_and_bounded():
    rows = [{"t1": 0.123456, "t2": 3.5}, {"t1": 2.0}]
    for quantization, qmax in (("u8", 255), ("u16", 65535)):
        info = build(rows, quantization).info()
        assert 0 < info["max_quantization_error"] <= 3.5 / qmax / 2 + 1e-9


def test_weights_that_quantize_to_zero_leave_the_input_and_forward_index_intact():
    rows = [{"t1": 0.001, "t2": 3.0, "t3": 0.0004}, {"t1": 0.002, "t4": 1.0}, {"t5": 0.0001}]
    vecs = SparseVectors.from_dicts(rows, VOCAB)
    before = vecs.to_dicts()
    index = Index.build(vecs, ["a", "b", "c"], quantization="u8", reorder="dominant")
    assert vecs.to_dicts() == before
    assert index.info()["dropped_postings"] == 4
    forward = {index.doc_ids[d]: {VOCAB[t]: float(w) for t, w in zip(
        index.forward_terms[index.forward_indptr[d]:index.forward_indptr[d + 1]],
        index.forward_weights[index.forward_indptr[d]:index.forward_indptr[d + 1]])} for d in range(3)}
    assert forward == {"a": pytest.approx(rows[0]), "b": pytest.approx(rows[1]), "c": pytest.approx(rows[2])}
    assert index.search({"t2": 1.0, "t4": 1.0, "t1": 1.0}, 5).ids == ["a", "b"]


def test_save_load_roundtrip(tmp_path):
    index = build([{"t1": 1.0, "t3": 0.5}, {"t3": 2.0}, {}])
    index.save(tmp_path / "idx")
    loaded = Index.load(tmp_path / "idx", verify=True)
    assert isinstance(loaded.postings_docs, np.memmap)
    assert loaded.doc_ids == index.doc_ids and loaded.vocab == index.vocab
    assert loaded.search({"t3": 1.0}, 3) == index.search({"t3": 1.0}, 3)
    info = loaded.info()
    assert info["num_docs"] == 3 and info["num_postings"] == 3 and info["bytes"] > 0
    assert info["settings"]["quantization"] == "u16"


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
    with pytest.raises(DataError, match="built from vectors without a model"):
        build([{"t1": 1.0}]).search("some text")


def test_interrupted_save_keeps_the_previous_index(tmp_path, monkeypatch):
    good = build([{"t1": 1.0}])
    good.save(tmp_path / "idx")
    calls = {"n": 0}
    real_save = np.save

    def failing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        build([{"t2": 1.0}, {"t2": 2.0}]).save(tmp_path / "idx")
    monkeypatch.undo()
    assert Index.load(tmp_path / "idx", verify=True).doc_ids == ["d0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temporary left behind


def test_save_refuses_to_overwrite_a_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(IndexFormatError, match="not an lsr index; refusing"):
        build([{"t1": 1.0}]).save(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_load_errors(tmp_path):
    with pytest.raises(IndexFormatError, match="no index directory"):
        Index.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="not an lsr index"):
        Index.load(tmp_path / "empty")
    path = build([{"t1": 1.0}]).save(tmp_path / "idx")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="format version 99, newer than this lsr reads"):
        Index.load(path)


def test_verify_detects_damage(tmp_path):
    path = build([{"t1": 1.0}, {"t1": 2.0}]).save(tmp_path / "idx")
    data = bytearray((path / "postings_impacts.npy").read_bytes())
    data[-1] ^= 0xFF
    (path / "postings_impacts.npy").write_bytes(bytes(data))
    Index.load(path)  # cheap load does not read everything
    with pytest.raises(IndexFormatError, match="does not match its checksum"):
        Index.load(path, verify=True)
    (path / "vocab.json").unlink()
    with pytest.raises(IndexFormatError, match="incomplete: missing vocab.json"):
        Index.load(path)
