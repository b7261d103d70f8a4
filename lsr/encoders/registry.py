"""Query encoders by model name, so an index can encode text queries the way it was built."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Manifest "encoder" keys that configure a SpladeEncoder (the rest describe the build).
SPLADE_KEYS = ("max_length", "query_max_length", "batch_size", "top_k")
BM25_KEYS = ("k1", "b", "norms", "analyzer")


def load_encoder(model: str, *, vocab: Sequence[str] | None = None, **settings: Any):
    """The encoder for ``model`` configured from an index manifest's ``encoder`` settings.

    ``model`` is ``"bm25"`` (a :class:`~lsr.encoders.bm25.BM25Encoder` over ``vocab``, the
    index's own terms, with the analyzer and BM25 parameters found in ``settings``) or a
    SPLADE model name or folder (a :class:`~lsr.encoders.SpladeEncoder`; ``vocab`` is
    ignored: the model's word pieces are its vocabulary). Settings that do not configure the
    encoder (build statistics and the like) are ignored.
    """
    from lsr.encoders.bm25 import BM25Encoder, is_bm25

    if is_bm25(model):
        if vocab is None:
            raise ValueError("a BM25 query encoder needs the index vocabulary (vocab=index.vocab)")
        return BM25Encoder(vocab=vocab, **{k: v for k, v in settings.items() if k in BM25_KEYS})
    from lsr.encoders.splade import SpladeEncoder

    return SpladeEncoder(model, **{k: v for k, v in settings.items() if k in SPLADE_KEYS})
