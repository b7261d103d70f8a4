"""Exhaustive top-k over CSR postings: the exact reference every pruned strategy must equal.

Scores accumulate term-at-a-time into a dense per-thread accumulator; a touched-list makes
reset and selection cost O(matched docs), not O(corpus). The quantized scores only choose the
candidates; the top-k is that of the float weights (see :mod:`lsr.index.kernels.candidates`).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT
from lsr.index.kernels.candidates import floor_of, rescore_margin
from lsr.index.kernels.forward import rescore

DENSE_SHARE = 4


@nb.njit(**JIT)
def search_exhaustive(q_terms, q_weights, indptr, docs, impacts, k, err_units, allowed, fwd_indptr, fwd_terms,
                      fwd_weights, acc, touched, qdense, out_docs, out_scores):
    """Exact top-k of one query by float score (sum of query weight x document weight).

    Only documents with ``allowed[d]`` are hits when ``allowed`` (uint8, one per doc) is not
    empty: deletions and filters are applied here, so k live hits come back. acc (float32,
    one slot per doc) must be zero on entry and is zero again on return; touched (int32, one
    slot per doc) is scratch; qdense as :func:`rescore` takes it. Docs sharing no term with
    the query are not hits. ``err_units`` bounds a posting's rounding error in impact units.

    A query whose postings outnumber the documents / DENSE_SHARE touches most of them: it skips
    the touched-list (a branch per posting) and scans the accumulator instead.
    """
    n_docs = acc.shape[0]
    postings = 0
    for i in range(q_terms.shape[0]):
        postings += indptr[q_terms[i] + 1] - indptr[q_terms[i]]
    n_touched = 0
    if postings * DENSE_SHARE > n_docs:
        for i in range(q_terms.shape[0]):
            t = q_terms[i]
            w = q_weights[i]
            for j in range(indptr[t], indptr[t + 1]):
                acc[docs[j]] += w * np.float32(impacts[j])
        for d in range(n_docs):
            if acc[d] > 0.0:
                touched[n_touched] = d
                n_touched += 1
    else:
        for i in range(q_terms.shape[0]):
            t = q_terms[i]
            w = q_weights[i]
            for j in range(indptr[t], indptr[t + 1]):
                d = docs[j]
                if acc[d] == 0.0:
                    touched[n_touched] = d
                    n_touched += 1
                acc[d] += w * np.float32(impacts[j])
    masked = allowed.shape[0] > 0
    # the k-th quantized score: a min-heap of scores alone (ties do not matter for a floor)
    heap = np.empty(k, dtype=np.float32)
    size = 0
    for i in range(n_touched):
        d = touched[i]
        if not masked or allowed[d]:
            s = acc[d]
            if size < k:
                heap[size] = s
                size += 1
                if size == k:
                    heap[:] = np.sort(heap)  # a sorted array is a min-heap
            elif s > heap[0]:
                _replace_min(heap, s)
    shrink, slack = rescore_margin(q_weights, err_units)
    floor = floor_of(heap, size, k, shrink, slack)
    n = 0
    for i in range(n_touched):
        d = touched[i]
        if acc[d] >= floor and (not masked or allowed[d]):
            touched[n] = d  # n <= i: compacting in place
            n += 1
        acc[d] = 0.0
    return rescore(q_terms, q_weights, touched, n, fwd_indptr, fwd_terms, fwd_weights, k, qdense, out_docs, out_scores)


@nb.njit(inline="always", **JIT)
def _replace_min(heap, s):
    """Replace the root of a min-heap of floats with the larger ``s`` and sift it down."""
    size = heap.shape[0]
    i = 0
    while True:
        small = i
        left = 2 * i + 1
        if left < size and heap[left] < s:
            small = left
        if left + 1 < size and heap[left + 1] < s and heap[left + 1] < heap[left]:
            small = left + 1
        if small == i:
            heap[i] = s
            return
        heap[i] = heap[small]
        i = small
