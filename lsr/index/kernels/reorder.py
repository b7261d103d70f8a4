"""Document sketches for reordering: each document's two heaviest terms, in one pass."""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT


@nb.njit(**JIT)
def top_two_terms(indptr, indices, values):
    """Per row, its heaviest and second-heaviest term ids (-1 where the row is shorter)."""
    n = indptr.shape[0] - 1
    first = np.full(n, -1, dtype=np.int64)
    second = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        w1 = -1.0
        w2 = -1.0
        for j in range(indptr[i], indptr[i + 1]):
            w = values[j]
            if w > w1:
                w2, second[i] = w1, first[i]
                w1, first[i] = w, indices[j]
            elif w > w2:
                w2, second[i] = w, indices[j]
    return first, second
