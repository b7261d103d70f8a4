"""Dense encoder, faiss dense index, hybrid and selective search, storage, and bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from lsr.data import SparseVectors
from lsr.errors import DataError, IndexFormatError
from lsr.index.dense import DenseIndex, add_dense
from lsr.retrieval import HybridQueries, Retriever
from lsr.retrieval.modes import MODES

from conftest import run_cli

pytest.importorskip("faiss")

N_DOCS, VOCAB, DIM = 240, 40, 16
TEXTS = ["coronavirus transmission in aerosols", "", "A much longer text about sparse retrieval. " * 60, "x"]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def hybrid_index() -> Retriever:
    """Random sparse and dense vectors for the same documents; doc ids given in shuffled order."""
    rng = np.random.default_rng(7)
    vocab = [f"t{j}" for j in range(VOCAB)]
    docs = [{vocab[j]: float(rng.random()) + 0.01 for j in rng.choice(VOCAB, 4, replace=False)} for _ in range(N_DOCS)]
    ids = [f"d{i}" for i in range(N_DOCS)]
    retriever = Retriever.build(SparseVectors.from_dicts(docs, vocab), ids, reorder="dominant")
    dense = unit(rng.normal(size=(N_DOCS, DIM)))
    add_dense(retriever.index, dense, ids, model=None, clusters=12)
    retriever.test_vectors = dict(zip(ids, dense))  # type: ignore[attr-defined]
    return retriever


def search_encoded(retriever: Retriever, queries: HybridQueries, k: int, mode: str = "hybrid", **knobs):
    """A dense-mode search of encoded queries (hybrid by default, as the old search_hybrid_encoded)."""
    return retriever.search_encoded(queries, k, mode=mode, **knobs)


@pytest.fixture(scope="module")
def queries(hybrid_index: Retriever) -> HybridQueries:
    rng = np.random.default_rng(3)
    sparse = SparseVectors.from_dicts([{"t1": 1.0, "t7": 0.5}, {"t3": 2.0}, {"t39": 0.3, "t2": 1.0}, {}], hybrid_index.vocab)
    return HybridQueries(sparse, unit(rng.normal(size=(4, DIM))))


# ---- encoder -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    from lsr.encoders.dense import DenseEncoder

    return DenseEncoder("all-MiniLM-L6-v2", threads=2)


def test_encoder_is_mean_pooling_then_normalization(minilm):
    import torch

    got = minilm.encode(TEXTS, batch_size=2)
    for text, row in zip(TEXTS, got):
        enc = minilm.tokenizer([text], truncation=True, max_length=minilm.max_length, return_tensors="pt")
        with torch.inference_mode():
            hidden = minilm.model(**enc)[0][0]
        mean = hidden.mean(dim=0)
        np.testing.assert_allclose(row, (mean / mean.norm()).numpy(), atol=1e-5)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 384)


def test_encoder_equals_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    from lsr.encoders.models import minilm_path

    reference = st.SentenceTransformer(str(minilm_path()), device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert minilm.max_length == 256
    assert np.abs(minilm.encode(TEXTS) - reference).max() < 1e-5


def test_encoder_bad_input(minilm):
    with pytest.raises(TypeError, match="sequence of texts"):
        minilm.encode("one string")
    assert minilm.encode([]).shape == (0, 384)


# ---- the dense index -------------------------------------------------------------------------
def test_flat_search_equals_numpy_inner_product(hybrid_index, queries):
    dense = hybrid_index.index.dense
    scores, rows = dense.search(queries.dense, 10)
    brute = queries.dense @ np.asarray(dense.vectors).T
    for q in range(len(queries)):
        expected = np.argsort(-brute[q], kind="stable")[:10]
        assert rows[q].tolist() == expected.tolist()
        np.testing.assert_allclose(scores[q], brute[q, expected], rtol=1e-5)


def test_dense_rows_follow_the_index_order(hybrid_index):
    """add_dense maps vectors by id, so a reordered sparse index still matches its dense rows."""
    for row, doc_id in enumerate(hybrid_index.doc_ids[:20]):
        np.testing.assert_array_equal(hybrid_index.index.dense.vectors[row], hybrid_index.test_vectors[doc_id])


@pytest.mark.parametrize("kind,knob", [("hnsw", {"ef_search": 400}), ("ivf", {"nprobe": 12})])
def test_hnsw_and_ivf_at_full_effort_equal_flat(hybrid_index, queries, kind, knob):
    flat = hybrid_index.index.dense
    other = DenseIndex.build(np.asarray(flat.vectors), model=None, kind=kind, clusters=12, ivf_lists=12)
    _, expected = flat.search(queries.dense, 5)
    _, got = other.search(queries.dense, 5, **knob)
    assert got.tolist() == expected.tolist()
    with pytest.raises(ValueError, match="applies to kind"):
        flat.search(queries.dense, 5, **knob)


def test_clusters_partition_the_documents(hybrid_index):
    d = hybrid_index.index.dense
    assert d.num_clusters == 12 and d.cluster_indptr[-1] == N_DOCS
    assert sorted(d.cluster_docs.tolist()) == list(range(N_DOCS))
    for c in range(d.num_clusters):
        assert (d.doc_cluster[d.cluster_docs[d.cluster_indptr[c] : d.cluster_indptr[c + 1]]] == c).all()


# ---- hybrid and selective search ---------------------------------------------------------------
@pytest.mark.parametrize("options", [{}, {"fusion": "linear", "dense_weight": 0.3}, {"fusion": "linear", "normalization": "zscore"}])
def test_selective_probing_every_cluster_equals_full_hybrid(hybrid_index, queries, options):
    full = search_encoded(hybrid_index, queries, 10, mode="hybrid", **options)
    every = search_encoded(hybrid_index, queries, 10, mode="selective", centroids=hybrid_index.index.dense.num_clusters, **options)
    for f, s in zip(full, every):
        assert s.ids == f.ids
        np.testing.assert_allclose(s.scores, f.scores, rtol=1e-5)
        assert s.dense_fraction == 1.0 and f.dense_fraction == 1.0


def test_selective_scores_only_the_chosen_clusters(hybrid_index, queries):
    [one] = search_encoded(hybrid_index, queries.take([1]), 10, mode="selective", candidates=1, centroids=0)
    sparse_top = hybrid_index.search_encoded(queries.sparse.take([1]), 1)[0].ids[0]
    d = hybrid_index.index.dense
    cluster = d.doc_cluster[hybrid_index.doc_ids.index(sparse_top)]
    size = d.cluster_indptr[cluster + 1] - d.cluster_indptr[cluster]
    assert one.dense_fraction == pytest.approx(size / N_DOCS)


def test_dense_mode_and_per_query_dense_weight(hybrid_index, queries):
    dense = search_encoded(hybrid_index, queries, 3, mode="dense")
    _, rows = hybrid_index.index.dense.search(queries.dense, 3)
    assert [r.ids for r in dense] == [[hybrid_index.doc_ids[i] for i in row] for row in rows]
    per_query = search_encoded(hybrid_index, queries, 5, mode="hybrid", fusion="linear", dense_weight=[0.0, 1.0, 0.5, 0.5])
    only_sparse = hybrid_index.search_encoded(queries.sparse.take([0]), 5)[0]
    assert per_query[0].ids == only_sparse.ids
    assert per_query[1].ids == dense[1].ids + per_query[1].ids[3:]


def test_save_load_round_trip_with_checksums(hybrid_index, queries, tmp_path):
    path = hybrid_index.save(tmp_path / "idx")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["dense"]["kind"] == "flat" and "dense_vectors.npy" in manifest["files"]
    loaded = Retriever.load(path, verify=True)
    before = search_encoded(hybrid_index, queries, 10, mode="selective")
    after = search_encoded(loaded, queries, 10, mode="selective")
    assert [(r.ids, r.scores, r.dense_fraction) for r in before] == [(r.ids, r.scores, r.dense_fraction) for r in after]
    with open(path / "dense_centroids.npy", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x00\x80\x7f")
    with pytest.raises(IndexFormatError, match="dense_centroids.npy does not match its checksum"):
        Retriever.load(path, verify=True)


def test_hnsw_part_survives_save_and_load(hybrid_index, queries, tmp_path):
    index = Retriever.load(hybrid_index.save(tmp_path / "flat"))
    add_dense(index.index, np.asarray(hybrid_index.index.dense.vectors), hybrid_index.doc_ids, model=None, kind="hnsw", clusters=12)
    loaded = Retriever.load(index.save(tmp_path / "hnsw"), verify=True)
    assert "dense_faiss.npy" in loaded.manifest["files"] and loaded.index.dense.settings["kind"] == "hnsw"
    np.testing.assert_array_equal(loaded.index.dense.search(queries.dense, 5)[1], index.index.dense.search(queries.dense, 5)[1])


# ---- bad input ---------------------------------------------------------------------------------
def test_dense_weight_alone_selects_linear_fusion(hybrid_index, queries):
    weighted = search_encoded(hybrid_index, queries, 10, dense_weight=0.3)
    linear = search_encoded(hybrid_index, queries, 10, fusion="linear", dense_weight=0.3)
    rrf = search_encoded(hybrid_index, queries, 10)
    assert [(r.ids, r.scores) for r in weighted] == [(r.ids, r.scores) for r in linear]
    assert [r.scores for r in weighted] != [r.scores for r in rrf]


def test_bad_input_gives_clear_errors(hybrid_index, queries):
    modes = ", ".join(MODES)
    with pytest.raises(ValueError, match=re.escape(f"unknown mode 'sparse'; modes: {modes}")):
        search_encoded(hybrid_index, queries, 5, mode="sparse")
    with pytest.raises(ValueError, match=re.escape(f"unknown mode 'hybird'; modes: {modes}")):
        hybrid_index.search({"t1": 1.0}, 5, mode="hybird")
    with pytest.raises(ValueError, match=re.escape("dense_weight must be in [0, 1], got 1.2")):
        search_encoded(hybrid_index, queries, 5, fusion="linear", dense_weight=1.2)
    with pytest.raises(ValueError, match="RRF takes none"):
        search_encoded(hybrid_index, queries, 5, fusion="rrf", dense_weight=0.5)
    with pytest.raises(ValueError, match="fusion must be one of rrf, linear, got 'max'"):
        search_encoded(hybrid_index, queries, 5, fusion="max")
    with pytest.raises(ValueError, match="2 dense_weight values for 4 queries"):
        search_encoded(hybrid_index, queries, 5, fusion="linear", dense_weight=[0.1, 0.2])
    with pytest.raises(ValueError, match=re.escape("depth must be in [1, 1000], got 0")):
        search_encoded(hybrid_index, queries, 5, depth=0)
    with pytest.raises(ValueError, match=re.escape("mode 'hybrid' has no knob 'alpha' (its knobs: ")):
        search_encoded(hybrid_index, queries, 5, alpha=0.5)  # BMP's alpha; the fusion weight is dense_weight
    with pytest.raises(DataError, match=r"dense queries must be \(queries, 16\)"):
        search_encoded(hybrid_index, HybridQueries(queries.sparse, queries.dense[:, :8]), 5)
    with pytest.raises(DataError, match="needs text queries"):
        hybrid_index.search({"t1": 1.0}, 5, mode="hybrid")
    with pytest.raises(ValueError, match=re.escape("mode 'exact' has no knob 'depth' (its knobs: strategy, alpha, beta)")):
        hybrid_index.search({"t1": 1.0}, 5, mode="exact", depth=10)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        hybrid_index.search("text", 0, mode="dense")


def test_dense_mode_without_a_dense_part(tmp_path):
    index = Retriever.build(SparseVectors.from_dicts([{"a": 1.0}, {"b": 1.0}]), ["x", "y"])
    for mode in ("dense", "hybrid", "selective"):
        with pytest.raises(DataError, match=re.escape(f"mode '{mode}' needs the dense part, which the index lacks: "
                                                      "build it with `lsr index --dense-model M`")):
            index.search("a query", 1, mode=mode)
        with pytest.raises(DataError, match=re.escape(f"mode '{mode}' needs the dense part, which the index lacks")):
            index.encode(["a query"], mode)  # said before any encoder is looked for
    with pytest.raises(DataError, match="the dense vectors do not cover"):
        add_dense(index.index, unit(np.ones((2, 4))), ["x", "z"], model=None)
    with pytest.raises(ValueError, match="clusters must be in"):
        add_dense(index.index, unit(np.ones((2, 4))), ["x", "y"], model=None, clusters=3)


# ---- end to end on ADI: CLI, Python API and REST ---------------------------------------------------
@pytest.fixture(scope="module")
def adi_hybrid(tmp_path_factory):
    from conftest import shared_dataset

    adi = shared_dataset("adi")
    out = tmp_path_factory.mktemp("adi-hybrid") / "index"
    run_cli("index", "--corpus", str(adi), "--out", str(out), "--dense-model", "all-MiniLM-L6-v2")
    return out


def test_cli_dense_and_hybrid_search(adi_hybrid):
    info = json.loads(run_cli("info", "--index", str(adi_hybrid), "--json", "--verify").stdout)
    # the collection records the dense model; its one segment holds the dense part (384-dim MiniLM vectors)
    assert info["dense"]["model"] == "all-MiniLM-L6-v2" and [s["docs"] for s in info["segments"]] == [82]
    segment = Retriever.load(adi_hybrid).index
    assert segment.path.parent == adi_hybrid / "segments" and "dense" in segment.parts
    assert segment.info()["dense"]["model"] == "all-MiniLM-L6-v2" and segment.info()["dense"]["dim"] == 384
    for mode in ("dense", "hybrid", "selective"):
        out = json.loads(run_cli("search", "--index", str(adi_hybrid), "--query", "computer information retrieval", "--mode", mode, "-k", "5", "--json").stdout)
        assert len(out["hits"]) == 5
    linear = run_cli("search", "--index", str(adi_hybrid), "--query", "indexing", "--mode", "hybrid", "--fusion", "linear", "--dense-weight", "0.3")
    assert len(linear.stdout.splitlines()) == 10
    bad = run_cli("search", "--index", str(adi_hybrid), "--query", "indexing", "--mode", "hybrid", "--fusion", "linear", "--dense-weight", "2", check=False)
    assert bad.returncode != 0 and "dense_weight must be in [0, 1], got 2" in bad.stderr
    bmp = run_cli("search", "--index", str(adi_hybrid), "--query", "indexing", "--mode", "hybrid", "--alpha", "0.3", check=False)
    assert bmp.returncode != 0 and "mode 'hybrid' has no knob 'alpha'" in bmp.stderr  # --alpha is block-max pruning's
