"""sentence-transformers SparseEncoder folders load as lsr encoders with the same vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lsr.data import load_corpus, load_queries
from lsr.encoders import load_encoder
from lsr.errors import LsrError
from lsr.retrieval import Retriever
from tests.conftest import run_cli

st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed (pip install '.[dense]')")


def _save(folder: Path, pooling: str, activation: str, prompts: dict | None = None) -> Path:
    """splade-tiny saved by sentence-transformers itself as MLMTransformer + SpladePooling."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    from lsr.encoders.models import splade_tiny_path

    model = SparseEncoder(modules=[MLMTransformer(str(splade_tiny_path())), SpladePooling(pooling, activation)], device="cpu",
                          prompts=prompts)
    model.save(str(folder))
    return folder


def _dense(vectors, vocab_size: int) -> np.ndarray:
    out = np.zeros((len(vectors), vocab_size), dtype=np.float64)
    for i in range(len(vectors)):
        t, w = vectors.row(i)
        out[i, t] = w
    return out


@pytest.mark.parametrize("pooling, activation", [("max", "relu"), ("sum", "relu"), ("max", "log1p_relu"), ("sum", "log1p_relu")])
def test_vectors_equal_sentence_transformers(adi: Path, tmp_path: Path, pooling: str, activation: str):
    folder = _save(tmp_path / "st", pooling, activation)
    texts = [d.contents for d in load_corpus(adi)[:16]] + [q.text for q in load_queries(adi)[:8]]
    theirs = st.SparseEncoder(str(folder), device="cpu").encode(texts, convert_to_tensor=True).to_dense().numpy()
    encoder = load_encoder(str(folder))
    assert type(encoder).__name__ == "SentenceTransformersSparseEncoder"
    assert (encoder.pooling, encoder.activation) == (pooling, activation)
    ours = _dense(encoder.encode_documents(texts), theirs.shape[1])
    assert np.abs(ours - theirs).max() < 1e-4
    assert (ours > 0).sum() == (theirs > 0).sum()


def test_prompts_and_index_round_trip(adi: Path, tmp_path: Path):
    """Query/document prompts are prepended as sentence-transformers does; an index built with
    the folder as --model encodes its text queries with it again."""
    folder = _save(tmp_path / "st", "max", "relu", prompts={"query": "query: ", "document": "passage: "})
    model = st.SparseEncoder(str(folder), device="cpu")
    encoder = load_encoder(str(folder))
    q = ["what is a computer program"]
    theirs = model.encode_query(q, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(_dense(encoder.encode_queries(q), theirs.shape[1]), theirs, atol=1e-4)
    theirs_d = model.encode_document(q, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(_dense(encoder.encode_documents(q), theirs.shape[1]), theirs_d, atol=1e-4)
    run_cli("index", "--corpus", str(adi), "--model", str(folder), "--out", str(tmp_path / "idx"))
    retriever = Retriever.load(tmp_path / "idx")
    hits = retriever.search(q[0], k=5)
    docs = {d.id: d.contents for d in load_corpus(adi)}
    doc_vecs = model.encode_document([docs[i] for i in hits.ids], convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(hits.scores, doc_vecs @ theirs[0], rtol=2e-3)  # u16 impacts


def _save_router(folder: Path) -> Path:
    """An inference-free model as sentence-transformers builds one: a Router whose query route is
    a SparseStaticEmbedding (random token weights here) and whose document route is splade-tiny."""
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SparseStaticEmbedding, SpladePooling
    from transformers import AutoTokenizer

    from lsr.encoders.models import splade_tiny_path

    tokenizer = AutoTokenizer.from_pretrained(str(splade_tiny_path()))
    weights = torch.rand(len(tokenizer.get_vocab()), generator=torch.Generator().manual_seed(0)) * 3
    router = Router.for_query_document(query_modules=[SparseStaticEmbedding(tokenizer, weight=weights, frozen=True)],
                                       document_modules=[MLMTransformer(str(splade_tiny_path())), SpladePooling("max", "relu")])
    SparseEncoder(modules=[router], device="cpu").save(str(folder))
    return folder


def test_inference_free_router(adi: Path, tmp_path: Path):
    """Router(query: SparseStaticEmbedding, document: MLMTransformer + SpladePooling): documents
    as sentence-transformers encodes them, queries through the inference-free encoder with the
    static weights, equal to encode_query; an index built with it answers text queries so."""
    folder = _save_router(tmp_path / "router")
    model = st.SparseEncoder(str(folder), device="cpu")
    encoder = load_encoder(str(folder))
    assert type(encoder.static).__name__ == "InferenceFreeEncoder"
    queries = [q.text for q in load_queries(adi)[:8]]
    theirs_q = model.encode_query(queries, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(_dense(encoder.encode_queries(queries), theirs_q.shape[1]), theirs_q, atol=1e-6)
    docs = [d.contents for d in load_corpus(adi)[:8]]
    theirs_d = model.encode_document(docs, convert_to_tensor=True).to_dense().numpy()
    assert np.abs(_dense(encoder.encode_documents(docs), theirs_d.shape[1]) - theirs_d).max() < 1e-4
    run_cli("index", "--corpus", str(adi), "--model", str(folder), "--out", str(tmp_path / "idx"))
    hits = Retriever.load(tmp_path / "idx").search(queries[0], k=5)
    contents = {d.id: d.contents for d in load_corpus(adi)}
    doc_vecs = model.encode_document([contents[i] for i in hits.ids], convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(hits.scores, doc_vecs @ theirs_q[0], rtol=2e-3)  # u16 impacts


def test_unsupported_folders_one_clear_error(tmp_path: Path):
    folder = _save(tmp_path / "st", "max", "relu")
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps([modules[1], modules[0]]))
    with pytest.raises(LsrError, match="expected the document modules MLMTransformer \\+ SpladePooling, found SpladePooling"):
        load_encoder(str(folder))
    (folder / "1_SpladePooling" / "config.json").write_text(json.dumps({"pooling_strategy": "mean"}))
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(LsrError, match="'mean'"):
        load_encoder(str(folder))
