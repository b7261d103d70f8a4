"""Document reordering: give similar documents neighbouring ids so blocks are homogeneous.

Block-max bounds are tight only when a block's documents share their heavy terms. Sorting
documents by their heaviest term, then their second heaviest, is a cheap clustering (one
pass and a sort, linear in postings) that captures much of that effect.
"""

from __future__ import annotations

import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.index.kernels.reorder import top_two_terms

REORDERINGS = ("none", "dominant")


def reorder_documents(vectors: SparseVectors, method: str) -> np.ndarray:
    """A permutation of document positions (new position -> old position)."""
    if method not in REORDERINGS:
        raise ValueError(f"reorder must be one of {REORDERINGS}, got {method!r}")
    if method == "none" or len(vectors) == 0:
        return np.arange(len(vectors))
    first, second = top_two_terms(vectors.indptr, vectors.indices, vectors.values)
    return np.lexsort((np.arange(len(vectors)), second, first))
