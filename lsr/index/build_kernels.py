"""Numba kernels used while building an index (one pass over the document vectors)."""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import _JIT


@nb.njit(**_JIT)
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


@nb.njit(**_JIT)
def rows_ascend(indptr, indices) -> bool:
    """Whether every CSR row's indices are strictly ascending."""
    for i in range(indptr.shape[0] - 1):
        for j in range(indptr[i] + 1, indptr[i + 1]):
            if indices[j] <= indices[j - 1]:
                return False
    return True


@nb.njit(**_JIT)
def sort_rows(indptr, indices, values):
    """Copies of a CSR matrix's indices and values with every row sorted by index."""
    out_i = indices.copy()
    out_v = values.copy()
    for i in range(indptr.shape[0] - 1):
        lo, hi = indptr[i], indptr[i + 1]
        order = np.argsort(indices[lo:hi], kind="mergesort")
        out_i[lo:hi] = indices[lo:hi][order]
        out_v[lo:hi] = values[lo:hi][order]
    return out_i, out_v
