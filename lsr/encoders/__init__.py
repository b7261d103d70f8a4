"""Text encoders behind one :class:`Encoder` protocol: SPLADE, BM25 and dense (never the index).

Names are imported on first use: the SPLADE and dense encoders load torch.
"""

from importlib import import_module
from typing import Any

_PUBLIC = {
    "Encoder": "lsr.encoders.base",
    "load_encoder": "lsr.encoders.registry",
    "DEFAULT_SPLADE": "lsr.encoders.models",
    "SPLADE_TINY": "lsr.encoders.models",
    "DEFAULT_DENSE": "lsr.encoders.models",
    "resolve_model": "lsr.encoders.models",
    "SpladeEncoder": "lsr.encoders.splade",
    "DenseEncoder": "lsr.encoders.dense",
    "BM25": "lsr.encoders.bm25",
    "BM25Encoder": "lsr.encoders.bm25",
    "LuceneEnglishAnalyzer": "lsr.encoders.bm25",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lsr.encoders' has no attribute {name!r}")
