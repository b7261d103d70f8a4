"""Document reordering: give similar documents neighbouring ids so blocks are homogeneous.

Block-max bounds are tight only when a block's documents share their heavy terms. Sorting
documents by their heaviest term, then their second heaviest, is a cheap clustering (one
pass and a sort, linear in postings) that captures much of that effect.
"""

from __future__ import annotations

import numpy as np

from lsr.data.vectors import SparseVectors

REORDERINGS = ("none", "dominant")


def _top_terms(vectors: SparseVectors, rank: int) -> np.ndarray:
    """Per document, its rank-th heaviest term id (-1 when it has fewer terms)."""
    lengths = np.diff(vectors.indptr)
    rows = np.repeat(np.arange(len(vectors)), lengths)
    order = np.lexsort((-vectors.values, rows))  # by row, heaviest first
    first = vectors.indptr[:-1] + rank
    out = np.full(len(vectors), -1, dtype=np.int64)
    has = lengths > rank
    out[has] = vectors.indices[order[first[has]]]
    return out


def reorder_documents(vectors: SparseVectors, method: str) -> np.ndarray:
    """A permutation of document positions (new position -> old position)."""
    if method not in REORDERINGS:
        raise ValueError(f"reorder must be one of {REORDERINGS}, got {method!r}")
    if method == "none" or len(vectors) == 0:
        return np.arange(len(vectors))
    first, second = _top_terms(vectors, 0), _top_terms(vectors, 1)
    return np.lexsort((np.arange(len(vectors)), second, first))
