"""Document reordering: give similar documents neighbouring ids so blocks are homogeneous.

Block-max bounds are tight only when a block's documents share their heavy terms.
``dominant`` sorts documents by their heaviest term, then their second heaviest: a cheap
clustering (one pass and a sort, linear in postings) that captures much of that effect.
``bp`` is recursive graph bisection (:mod:`lsr.index.kernels.bp_reorder`): slower to build
(iterations over every posting at each of log2(docs / block) levels), and the reordering the
literature uses for pruned search.
"""

from __future__ import annotations

import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.index.kernels.bp_reorder import graph_bisection
from lsr.index.kernels.reorder import top_two_terms

REORDERINGS = ("none", "dominant", "bp")
BP_ITERATIONS = 20  # swap rounds per bisection (each stops early once no swap gains)


def reorder_documents(vectors: SparseVectors, method: str, block_size: int = 32) -> np.ndarray:
    """A permutation of document positions (new position -> old position)."""
    if method not in REORDERINGS:
        raise ValueError(f"reorder must be one of {REORDERINGS}, got {method!r}")
    if method == "none" or len(vectors) == 0:
        return np.arange(len(vectors))
    if method == "bp":
        return graph_bisection(vectors.indptr.astype(np.int64), vectors.indices.astype(np.int32), len(vectors.vocab),
                               block_size, BP_ITERATIONS)
    first, second = top_two_terms(vectors.indptr, vectors.indices, vectors.values)
    return np.lexsort((np.arange(len(vectors)), second, first))
