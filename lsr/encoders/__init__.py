"""Text encoders producing sparse term weights."""

from lsr.encoders.models import DEFAULT_SPLADE, SPLADE_TINY, resolve_model
from lsr.encoders.splade import SpladeEncoder
from lsr.encoders.bm25 import BM25, BM25Encoder, LuceneEnglishAnalyzer
from lsr.encoders.registry import load_encoder

__all__ = [
    "BM25",
    "BM25Encoder",
    "DEFAULT_SPLADE",
    "LuceneEnglishAnalyzer",
    "SPLADE_TINY",
    "SpladeEncoder",
    "load_encoder",
    "resolve_model",
]
