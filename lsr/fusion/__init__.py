"""Dense and hybrid retrieval: score fusion and sparse-guided selective dense search."""

from lsr.fusion.fuse import FUSIONS, NORMALIZATIONS, linear, normalize, rrf
from lsr.fusion.hybrid import HybridQueries, HybridResult, encode_hybrid, search_hybrid, search_hybrid_encoded

__all__ = [
    "FUSIONS",
    "NORMALIZATIONS",
    "HybridQueries",
    "HybridResult",
    "encode_hybrid",
    "linear",
    "normalize",
    "rrf",
    "search_hybrid",
    "search_hybrid_encoded",
]
