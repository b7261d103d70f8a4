"""Forward rows (document -> ascending terms) to postings (term -> ascending documents) by a
counting sort: two passes over the entries, against scipy's CSC conversion plus its index
sort and the int64 entry numbers it needed (0.7 s of a 13M-entry build). Both passes take a
range of rows, so that ranges run on threads (:func:`lsr.index.build.transposed`)."""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT


@nb.njit(**JIT)
def count_terms(indptr, terms, weights, keep_zeros, d_lo, d_hi, counts):
    """counts[t] += the entries of term t in rows d_lo..d_hi, those whose weight is not > 0
    left out unless ``keep_zeros``: the first pass of the counting sort, one row range of it."""
    for j in range(indptr[d_lo], indptr[d_hi]):
        if keep_zeros or weights[j] > 0:
            counts[terms[j]] += 1


@nb.njit(**JIT)
def scatter_rows(indptr, terms, weights, keep_zeros, d_lo, d_hi, fill, docs, out_w):
    """The second pass for rows d_lo..d_hi: each counted entry's doc and weight at fill[term],
    which moves on (fill starts where this range's postings of each term go). The weights
    travel with the docs, not gathered afterwards through entry numbers: one random write per
    posting instead of a write and a later random read."""
    for d in range(d_lo, d_hi):
        for j in range(indptr[d], indptr[d + 1]):
            if keep_zeros or weights[j] > 0:
                p = fill[terms[j]]
                docs[p] = d
                out_w[p] = weights[j]
                fill[terms[j]] = p + 1


@nb.njit(**JIT)
def first_unascending(indptr, terms):
    """The first entry whose term does not exceed the one before it in its row, or -1."""
    for d in range(indptr.shape[0] - 1):
        for j in range(indptr[d] + 1, indptr[d + 1]):
            if terms[j] <= terms[j - 1]:
                return j
    return -1
