"""Numba kernels for exhaustive top-k search over CSR postings.

Kernels take plain arrays only. Scores accumulate term-at-a-time into a dense per-thread
accumulator; a touched-list makes reset and selection cost O(matched docs), not O(corpus).
Ranking is by score descending, then internal doc id ascending, so results are deterministic.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# njit is nopython; nogil lets search threads run in parallel; cache avoids recompiling per process.
_JIT = dict(nogil=True, cache=True)


@nb.njit(inline="always", **_JIT)
def _better(s1, d1, s2, d2) -> bool:
    """Whether hit (s1, d1) ranks above (s2, d2)."""
    return s1 > s2 or (s1 == s2 and d1 < d2)


@nb.njit(inline="always", **_JIT)
def lower_bound(arr, lo, hi, value) -> int:
    """The first position in arr[lo:hi] (ascending) holding a value >= ``value`` (hi if none)."""
    while lo < hi:
        m = (lo + hi) >> 1
        if arr[m] < value:
            lo = m + 1
        else:
            hi = m
    return lo


@nb.njit(**_JIT)
def _sift_down(heap_s, heap_d, size, i):
    """Restore the min-heap (worst hit at the root) below position i."""
    while True:
        worst = i
        left = 2 * i + 1
        right = left + 1
        if left < size and _better(heap_s[worst], heap_d[worst], heap_s[left], heap_d[left]):
            worst = left
        if right < size and _better(heap_s[worst], heap_d[worst], heap_s[right], heap_d[right]):
            worst = right
        if worst == i:
            return
        heap_s[i], heap_s[worst] = heap_s[worst], heap_s[i]
        heap_d[i], heap_d[worst] = heap_d[worst], heap_d[i]
        i = worst


@nb.njit(**_JIT)
def _sift_up(heap_s, heap_d, i):
    while i > 0:
        parent = (i - 1) // 2
        if not _better(heap_s[parent], heap_d[parent], heap_s[i], heap_d[i]):
            return
        heap_s[i], heap_s[parent] = heap_s[parent], heap_s[i]
        heap_d[i], heap_d[parent] = heap_d[parent], heap_d[i]
        i = parent


@nb.njit(inline="always", **_JIT)
def heap_offer(heap_s, heap_d, size, k, s, d) -> int:
    """Offer hit (s, d) to a bounded min-heap of capacity k; returns the new size."""
    if size < k:
        heap_s[size] = s
        heap_d[size] = d
        _sift_up(heap_s, heap_d, size)
        return size + 1
    if _better(s, d, heap_s[0], heap_d[0]):
        heap_s[0] = s
        heap_d[0] = d
        _sift_down(heap_s, heap_d, size, 0)
    return size


@nb.njit(**_JIT)
def heap_drain(heap_s, heap_d, size, out_docs, out_scores) -> int:
    """Empty the heap into out_* best first; returns the number of hits."""
    n = size
    while size > 0:  # pop worst-first into the tail of the output
        size -= 1
        out_scores[size] = heap_s[0]
        out_docs[size] = heap_d[0]
        heap_s[0] = heap_s[size]
        heap_d[0] = heap_d[size]
        _sift_down(heap_s, heap_d, size, 0)
    return n


@nb.njit(**_JIT)
def _select_top_k(acc, touched, n_touched, k, out_docs, out_scores):
    """Best k of the touched docs into out_* (best first); clears acc; returns the hit count."""
    heap_s = np.empty(k, dtype=np.float32)
    heap_d = np.empty(k, dtype=np.int32)
    size = 0
    for t in range(n_touched):
        d = touched[t]
        size = heap_offer(heap_s, heap_d, size, k, acc[d], d)
        acc[d] = 0.0
    return heap_drain(heap_s, heap_d, size, out_docs, out_scores)


@nb.njit(**_JIT)
def search_exhaustive(q_terms, q_weights, indptr, docs, impacts, k, acc, touched, out_docs, out_scores):
    """Exact top-k of one query: sum of query weight x stored impact over shared terms.

    acc (float32, one slot per doc) must be zero on entry and is zero again on return;
    touched (int32, one slot per doc) is scratch. Docs sharing no term with the query are
    not hits. Scores are in impact units (multiply by the index scale).
    """
    n_touched = 0
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        w = q_weights[i]
        if w <= 0.0:
            continue
        for j in range(indptr[t], indptr[t + 1]):
            d = docs[j]
            if acc[d] == 0.0:
                touched[n_touched] = d
                n_touched += 1
            acc[d] += w * np.float32(impacts[j])
    return _select_top_k(acc, touched, n_touched, k, out_docs, out_scores)


@nb.njit(parallel=True, **_JIT)
def search_exhaustive_batch(q_indptr, q_terms, q_weights, indptr, docs, impacts, n_docs, k, n_workers):
    """search_exhaustive for many queries (CSR rows), spread over n_workers threads.

    Returns (docs, scores, counts): row i holds query i's hits in its first counts[i] slots.
    """
    n_queries = q_indptr.shape[0] - 1
    out_docs = np.full((n_queries, k), -1, dtype=np.int32)
    out_scores = np.zeros((n_queries, k), dtype=np.float32)
    counts = np.zeros(n_queries, dtype=np.int64)
    for w in nb.prange(n_workers):
        acc = np.zeros(n_docs, dtype=np.float32)
        touched = np.empty(n_docs, dtype=np.int32)
        for q in range(w, n_queries, n_workers):  # strided: neighbours in a batch cost alike
            lo, hi = q_indptr[q], q_indptr[q + 1]
            counts[q] = search_exhaustive(
                q_terms[lo:hi], q_weights[lo:hi], indptr, docs, impacts, k, acc, touched, out_docs[q], out_scores[q]
            )
    return out_docs, out_scores, counts
