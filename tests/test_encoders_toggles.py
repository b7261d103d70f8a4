"""The Unified framework's toggles each change exactly what they say: no query expansion keeps
only a query's own tokens (their weights unchanged), no query weighting makes every weight 1
(terms unchanged), no document expansion keeps only a document's own tokens."""

from __future__ import annotations

import numpy as np
import pytest

from lsr.data import iter_corpus, load_queries
from lsr.encoders import SpladeEncoder
from lsr.index import SparseIndex
from lsr.retrieval import Retriever
from lsr.retrieval.collection import Collection


def _own_tokens(tokenizer, text: str, max_length: int) -> set[str]:
    ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
    special = set(tokenizer.all_special_ids)
    return {tokenizer.convert_ids_to_tokens(i) for i in ids if i not in special}


def _check_own_tokens_only(full, own, texts, tokenizer, max_length: int) -> int:
    """``own`` holds exactly ``full``'s weights on each text's own tokens; returns the terms dropped."""
    dropped = 0
    for i, text in enumerate(texts):
        mine = _own_tokens(tokenizer, text, max_length)
        want = {t: w for t, w in full.to_dict(i).items() if t in mine}
        assert own.to_dict(i) == want
        dropped += len(full.to_dict(i)) - len(want)
    return dropped


@pytest.fixture(scope="module")
def adi_docs(adi):
    return list(iter_corpus(adi / "corpus.jsonl"))


@pytest.fixture(scope="module")
def retriever(splade_tiny, adi_docs):
    vectors = splade_tiny.encode_documents([d.contents for d in adi_docs])
    index = SparseIndex.build(vectors, [d.id for d in adi_docs], model="splade-tiny", encoder_settings=splade_tiny.settings())
    return Retriever(index, encoder=splade_tiny)


def test_no_query_expansion_keeps_own_tokens_with_their_weights(retriever, splade_tiny, adi):
    texts = [q.text for q in load_queries(adi)]
    full = retriever.encode_queries(texts)
    own = retriever.encode_queries(texts, query_expansion=False)
    # splade-tiny expands queries: the toggle had something to remove
    assert _check_own_tokens_only(full, own, texts, splade_tiny.tokenizer, splade_tiny.query_max_length) > 0


def test_no_query_weighting_is_binary_over_the_same_terms(retriever, adi):
    texts = [q.text for q in load_queries(adi)][:10]
    for expansion in (True, False):
        weighted = retriever.encode_queries(texts, query_expansion=expansion)
        binary = retriever.encode_queries(texts, query_expansion=expansion, query_weighting=False)
        assert np.array_equal(binary.indptr, weighted.indptr) and np.array_equal(binary.indices, weighted.indices)
        assert (binary.values == 1).all()
    # the inference-free encoder too: its distinct tokens, each 1
    idf = retriever.encode_queries(texts, query_encoder="idf")
    ones = retriever.encode_queries(texts, query_encoder="idf", query_weighting=False)
    assert np.array_equal(ones.indices, idf.indices) and (ones.values == 1).all()


def test_no_document_expansion_keeps_own_tokens_with_their_weights(splade_tiny, adi_docs, tmp_path):
    texts = [d.contents for d in adi_docs]
    full = splade_tiny.encode_documents(texts)
    own_encoder = SpladeEncoder("splade-tiny", document_expansion=False)
    own = own_encoder.encode_documents(texts)
    assert _check_own_tokens_only(full, own, texts, splade_tiny.tokenizer, splade_tiny.max_length) > 0
    # queries are untouched by the document toggle
    assert own_encoder.encode_queries(["information retrieval"]).to_dict(0) == splade_tiny.encode_queries(["information retrieval"]).to_dict(0)
    # a collection records it: documents added later are encoded the same way
    with Collection.create(tmp_path / "c", model="splade-tiny", encoder_options={"document_expansion": False}) as c:
        c.add(adi_docs[:5])
        c.commit()
        stored = Retriever(c).segments.indexes[0]
        for r, doc_id in enumerate(stored.doc_ids):
            i = next(j for j, d in enumerate(adi_docs) if d.id == doc_id)
            lo, hi = stored.forward_indptr[r], stored.forward_indptr[r + 1]
            assert {stored.vocab[t] for t in stored.forward_terms[lo:hi]} == set(own.to_dict(i))
