"""Forward rows (document -> ascending terms) to postings (term -> ascending documents) by a
counting sort: two passes over the entries, against scipy's CSC conversion plus its index
sort and the int64 entry numbers it needed (0.7 s of a 13M-entry build)."""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT


@nb.njit(**JIT)
def transpose_rows(indptr, terms, weights, keep_zeros, vocab_size):
    """(indptr over terms, docs ascending within a term, each posting's weight); entries whose
    weight is not > 0 are left out unless ``keep_zeros``. Terms must be in [0, vocab_size).
    The weights are scattered with the docs, not gathered afterwards through entry numbers:
    one random write per posting instead of a write and a later random read."""
    ptr = np.zeros(vocab_size + 1, dtype=np.int64)
    for j in range(terms.shape[0]):
        if keep_zeros or weights[j] > 0:
            ptr[terms[j] + 1] += 1
    for t in range(vocab_size):
        ptr[t + 1] += ptr[t]
    fill = ptr[:-1].copy()
    docs = np.empty(ptr[-1], dtype=np.int32)
    out_w = np.empty(ptr[-1], dtype=np.float32)
    for d in range(indptr.shape[0] - 1):
        for j in range(indptr[d], indptr[d + 1]):
            if keep_zeros or weights[j] > 0:
                p = fill[terms[j]]
                docs[p] = d
                out_w[p] = weights[j]
                fill[terms[j]] = p + 1
    return ptr, docs, out_w


@nb.njit(**JIT)
def first_unascending(indptr, terms):
    """The first entry whose term does not exceed the one before it in its row, or -1."""
    for d in range(indptr.shape[0] - 1):
        for j in range(indptr[d] + 1, indptr[d + 1]):
            if terms[j] <= terms[j - 1]:
                return j
    return -1
