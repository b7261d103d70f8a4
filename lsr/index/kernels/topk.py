"""Top-k selection every search kernel shares: a bounded min-heap of (score, doc) pairs for hits
offered one by one, and :func:`top_k_of` for scores already gathered.

Ranking is by score descending, then internal doc id ascending, so results are deterministic.
A heap costs a few sift steps per hit that enters it, about k ln(n / k) of them, each a chain
of unpredictable branches; a (score, doc) heap also compares doc ids on every offer. So
gathered scores go through a heap of scores alone for small k (one compare per score), and
through a bucket select for large k (three branch-light passes).
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
def batch_outputs(n_queries, k):
    """Result rows of a batch kernel: docs (-1 past the hits), scores, and each query's hit count."""
    return np.full((n_queries, k), -1, dtype=np.int32), np.zeros((n_queries, k), dtype=np.float32), np.zeros(n_queries, dtype=np.int64)


# Up to this k, top_k_of finds the k-th score with a heap of scores; past it, by bucket select.
HEAP_K = 64
# A key's bucket: the top BUCKET_BITS bits of its offset from the smallest key. 4,096 int64
# counts stay in L1.
BUCKET_BITS = 12
# Below this many hits a bucket is sorted by insertion.
INSERTION_SORT = 32


@nb.njit(**JIT)
def top_k_of(docs, scores, n, k, out_docs, out_scores):
    """The best k of docs[:n] / scores[:n] (positive float64 scores, distinct docs) written best
    first into out_*; returns min(k, n). docs and scores are scratch."""
    if k > HEAP_K:
        return bucket_select(docs, scores, n, k, out_docs, out_scores)
    kth = kth_score(scores, n, k)
    m = 0
    for i in range(n):  # the hits and those tied with the k-th
        if scores[i] >= kth:
            docs[m] = docs[i]
            scores[m] = scores[i]
            m += 1
    sort_hits(docs, scores, 0, m)
    want = min(k, m)
    out_docs[:want] = docs[:want]
    out_scores[:want] = scores[:want]
    return want


@nb.njit(**JIT)
def raise_floor(floor, s):
    """Take score ``s``, above floor[0], into ``floor``: a min-heap of the k best scores seen so
    far (k slots of -inf at first). A kernel gathering scores one by one keeps only those not
    below floor[0] (its caller's test), so top_k_of sees a few times k of them, not every hit."""
    _replace_min(floor, s)


@nb.njit(**JIT)
def kth_score(scores, n, k):
    """The k-th largest of scores[:n] (-inf when n < k), by a min-heap of k scores."""
    if n < k:
        return -np.inf
    heap = np.sort(scores[:k])  # a sorted array is a min-heap
    for i in range(k, n):
        s = scores[i]
        if s > heap[0]:
            _replace_min(heap, s)
    return heap[0]


@nb.njit(inline="always", **JIT)
def _replace_min(heap, s):
    """Replace the root of a min-heap of scores with the larger ``s`` and sift it down."""
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


@nb.njit(**JIT)
def bucket_select(docs, scores, n, k, out_docs, out_scores):
    """The best k of docs[:n] / scores[:n] (positive float64 scores, distinct docs) written best
    first into out_*; returns min(k, n).

    A positive float's bits, read as an unsigned integer, order as the float does, so a
    histogram of the keys' leading bits finds the bucket holding the k-th best: the buckets
    above it are taken whole, scattered in bucket order, and only it and each taken bucket are
    sorted among themselves, all small.
    """
    if n == 0:
        return 0
    keys = scores[:n].view(np.uint64)
    lo = keys[0]
    hi = keys[0]
    for i in range(n):
        lo = min(lo, keys[i])
        hi = max(hi, keys[i])
    shift = np.uint64(0)
    while (hi - lo) >> shift >= np.uint64(1 << BUCKET_BITS):
        shift += np.uint64(1)
    counts = np.zeros(1 << BUCKET_BITS, dtype=np.int64)
    for i in range(n):
        counts[(keys[i] - lo) >> shift] += 1
    want = min(k, n)
    above = 0  # hits in the buckets above `edge`, all taken
    edge = counts.shape[0] - 1
    while above + counts[edge] < want:
        above += counts[edge]
        edge -= 1
    starts = np.empty(counts.shape[0], dtype=np.int64)
    at = 0
    for b in range(counts.shape[0] - 1, edge, -1):
        starts[b] = at
        at += counts[b]
    edge_docs = np.empty(counts[edge], dtype=np.int32)
    edge_scores = np.empty(counts[edge], dtype=np.float64)
    m = 0
    for i in range(n):
        b = np.int64((keys[i] - lo) >> shift)
        if b > edge:
            out_docs[starts[b]] = docs[i]
            out_scores[starts[b]] = scores[i]
            starts[b] += 1
        elif b == edge:
            edge_docs[m] = docs[i]
            edge_scores[m] = scores[i]
            m += 1
    sort_hits(edge_docs, edge_scores, 0, m)
    out_docs[above:want] = edge_docs[: want - above]
    out_scores[above:want] = edge_scores[: want - above]
    at = 0
    for b in range(counts.shape[0] - 1, edge, -1):
        if counts[b] > 1:
            sort_hits(out_docs, out_scores, at, at + counts[b])
        at += counts[b]
    return want


@nb.njit(**JIT)
def sort_hits(docs, scores, lo, hi):
    """Sort docs[lo:hi] / scores[lo:hi] best first (score descending, then doc ascending)."""
    if hi - lo > INSERTION_SORT:
        order = np.argsort(-scores[lo:hi], kind="mergesort")  # stable: ties keep their order...
        d = docs[lo:hi][order]
        docs[lo:hi] = d
        scores[lo:hi] = scores[lo:hi][order]
        i = lo
        while i < hi:  # ...which is not doc order: each run of equal scores is sorted by doc
            j = i + 1
            while j < hi and scores[j] == scores[i]:
                j += 1
            if j - i > 1:
                docs[i:j] = np.sort(docs[i:j])
            i = j
        return
    for a in range(lo + 1, hi):
        d, s = docs[a], scores[a]
        b = a - 1
        while b >= lo and _better(s, d, scores[b], docs[b]):
            docs[b + 1] = docs[b]
            scores[b + 1] = scores[b]
            b -= 1
        docs[b + 1] = d
        scores[b + 1] = s
