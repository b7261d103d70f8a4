"""lsr: learned sparse retrieval with SPLADE encoders and a Numba inverted index.

Public names are imported on first use, so ``import lsr`` (or ``import lsr.index``) does not
load torch: an index of precomputed vectors is searched without it.
"""

from importlib import import_module
from typing import Any

from lsr.version import __version__

_PUBLIC = {
    "DataError": "lsr.errors",
    "IndexFormatError": "lsr.errors",
    "LsrError": "lsr.errors",
    "SparseVectors": "lsr.data",
    "SparseIndex": "lsr.index",
    "Retriever": "lsr.retrieval",
    "SearchResult": "lsr.retrieval",
    "SpladeEncoder": "lsr.encoders",
    "BM25Encoder": "lsr.encoders",
    "load_encoder": "lsr.encoders",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lsr' has no attribute {name!r}")
