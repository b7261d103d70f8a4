"""The SPLADE encoder equals textbook SPLADE-max and handles the edges of its input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lsr.encoders import SpladeEncoder, models
from lsr.errors import LsrError

TEXTS = [
    "Learned sparse retrieval expands documents with related terms.",
    "",
    "Block-max pruning " * 60,  # longer than max_length: truncated
    "cats",
    "   ",
    "Inverted indexes answer top-k queries quickly.",
]


def textbook_splade(encoder: SpladeEncoder, texts: list[str], max_length: int) -> np.ndarray:
    """max over non-padding tokens of log(1 + relu(MLM logits)), on full padded batches."""
    tok = encoder.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        logits = encoder.model(**tok).logits
    return torch.max(torch.log1p(torch.relu(logits)) * tok["attention_mask"].unsqueeze(-1), dim=1).values.numpy()


def dense(vectors, vocab_size: int) -> np.ndarray:
    out = np.zeros((len(vectors), vocab_size), dtype=np.float32)
    for i in range(len(vectors)):
        ids, vals = vectors.row(i)
        out[i, ids] = vals
    return out


@pytest.mark.parametrize("is_query", [False, True])
def test_matches_textbook_splade_max(splade_tiny, is_query):
    got = dense(splade_tiny.encode(TEXTS, is_query=is_query, batch_size=2), len(splade_tiny.vocab))
    max_length = splade_tiny.query_max_length if is_query else splade_tiny.max_length
    nonblank = [i for i, t in enumerate(TEXTS) if t.strip()]
    expected = textbook_splade(splade_tiny, [TEXTS[i] for i in nonblank], max_length)
    assert np.abs(got[nonblank] - expected).max() < 1e-4
    assert got[1].sum() == 0 and got[4].sum() == 0  # blank texts: empty vectors


def test_output_is_sparse_readable_and_in_input_order(splade_tiny):
    vecs = splade_tiny.encode_documents(["cats", "dogs and cats", "cats"])
    assert len(vecs) == 3 and vecs.to_dict(0) == pytest.approx(vecs.to_dict(2), abs=1e-5)
    assert (vecs.values > 0).all() and vecs.indices.dtype == np.int32
    terms = vecs.to_dict(1)
    assert "dogs" in terms and "cats" in terms
    assert list(terms.values()) == sorted(terms.values(), reverse=True)
    assert len(splade_tiny.encode([])) == 0
    with pytest.raises(TypeError, match="not a single string"):
        splade_tiny.encode("a string")


def test_top_k_pruning_keeps_the_heaviest_terms(splade_tiny):
    pruned = SpladeEncoder("splade-tiny", top_k=5).encode_documents([TEXTS[0]])
    full = splade_tiny.encode_documents([TEXTS[0]]).to_dict(0)
    assert pruned.to_dict(0) == pytest.approx(dict(list(full.items())[:5]), rel=1e-6)


def test_bad_settings():
    with pytest.raises(ValueError, match="batch_size"):
        SpladeEncoder("splade-tiny", batch_size=0)
    with pytest.raises(LsrError, match="no config.json"):
        SpladeEncoder(".")


def test_bundled_weights_are_checked(monkeypatch):
    monkeypatch.setattr(models, "_SPLADE_TINY_SHA256", "0" * 64)
    with pytest.raises(LsrError, match="has sha256 .* expected 0000"):
        models.resolve_model("splade-tiny")
