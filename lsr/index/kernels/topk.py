"""The bounded top-k queue every search kernel shares: a min-heap of (score, doc) pairs.

Ranking is by score descending, then internal doc id ascending, so results are deterministic.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT


@nb.njit(inline="always", **JIT)
def _better(s1, d1, s2, d2) -> bool:
    """Whether hit (s1, d1) ranks above (s2, d2)."""
    return s1 > s2 or (s1 == s2 and d1 < d2)


@nb.njit(**JIT)
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


@nb.njit(**JIT)
def _sift_up(heap_s, heap_d, i):
    while i > 0:
        parent = (i - 1) // 2
        if not _better(heap_s[parent], heap_d[parent], heap_s[i], heap_d[i]):
            return
        heap_s[i], heap_s[parent] = heap_s[parent], heap_s[i]
        heap_d[i], heap_d[parent] = heap_d[parent], heap_d[i]
        i = parent


@nb.njit(inline="always", **JIT)
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


@nb.njit(**JIT)
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


@nb.njit(**JIT)
def select_top_k(acc, touched, n_touched, k, allowed, out_docs, out_scores):
    """Best k of the touched docs into out_* (best first), only docs with ``allowed[d]`` when
    ``allowed`` is not empty; clears acc; returns the hit count."""
    heap_s = np.empty(k, dtype=np.float32)
    heap_d = np.empty(k, dtype=np.int32)
    size = 0
    masked = allowed.shape[0] > 0
    for t in range(n_touched):
        d = touched[t]
        if not masked or allowed[d]:
            size = heap_offer(heap_s, heap_d, size, k, acc[d], d)
        acc[d] = 0.0
    return heap_drain(heap_s, heap_d, size, out_docs, out_scores)




@nb.njit(**JIT)
def batch_outputs(n_queries, k):
    """Result rows of a batch kernel: docs (-1 past the hits), scores, and each query's hit count."""
    return np.full((n_queries, k), -1, dtype=np.int32), np.zeros((n_queries, k), dtype=np.float32), np.zeros(n_queries, dtype=np.int64)
