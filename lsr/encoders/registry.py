"""Encoders by model name, so an index built with one encodes its queries the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lsr.encoders.base import Encoder

# Manifest "encoder" keys that configure each encoder (the rest describe the build).
SPLADE_KEYS = ("max_length", "query_max_length", "batch_size", "top_k", "document_expansion")
BM25_KEYS = ("k1", "b", "norms", "analyzer")
DENSE_KEYS = ("max_length", "batch_size")


def load_encoder(model: str, *, vocab: Sequence[str] | None = None, dense: bool = False, **settings: Any) -> Encoder:
    """The encoder ``model`` names, configured from a manifest's ``encoder`` settings.

    ``model`` is ``"bm25"`` (a :class:`~lsr.encoders.bm25.BM25Encoder`; for queries of an
    existing index pass ``vocab``, the index's terms), a dense model when ``dense`` (a
    :class:`~lsr.encoders.dense.DenseEncoder`), a sentence-transformers SparseEncoder folder, or
    else a SPLADE model name or folder.
    Settings that configure none of them (build statistics and the like) are ignored.
    """
    from lsr.encoders.bm25 import BM25Encoder, is_bm25

    if is_bm25(model):
        return BM25Encoder(vocab=vocab, **{k: v for k, v in settings.items() if k in BM25_KEYS})
    if dense:
        from lsr.encoders.dense import DenseEncoder

        return DenseEncoder(model, **{k: v for k, v in settings.items() if k in DENSE_KEYS})
    from lsr.encoders.splade import SpladeEncoder
    from lsr.encoders.st_sparse import SentenceTransformersSparseEncoder, is_st_sparse

    splade = {k: v for k, v in settings.items() if k in SPLADE_KEYS}
    if is_st_sparse(model):
        return SentenceTransformersSparseEncoder(model, **splade)
    return SpladeEncoder(model, **splade)
