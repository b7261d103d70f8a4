"""Exhaustive top-k over CSR postings: the exact reference every pruned strategy must equal.

Scores accumulate term-at-a-time into a dense per-thread accumulator; a touched-list makes
reset and selection cost O(matched docs), not O(corpus).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT
from lsr.index.kernels.topk import batch_outputs, select_top_k


@nb.njit(**JIT)
def search_exhaustive(q_terms, q_weights, indptr, docs, impacts, k, allowed, acc, touched, out_docs, out_scores):
    """Exact top-k of one query: sum of query weight x stored impact over shared terms.

    Only documents with ``allowed[d]`` are hits when ``allowed`` (uint8, one per doc) is not
    empty: deletions and filters are applied here, so k live hits come back. acc (float32,
    one slot per doc) must be zero on entry and is zero again on return; touched (int32, one
    slot per doc) is scratch. Docs sharing no term with the query are not hits. Scores are in
    impact units (multiply by the index scale).
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
    return select_top_k(acc, touched, n_touched, k, allowed, out_docs, out_scores)


@nb.njit(parallel=True, **JIT)
def search_exhaustive_batch(q_indptr, q_terms, q_weights, indptr, docs, impacts, n_docs, k, allowed, n_workers):
    """search_exhaustive for many queries (CSR rows), spread over n_workers threads.

    Returns (docs, scores, counts): row i holds query i's hits in its first counts[i] slots.
    """
    n_queries = q_indptr.shape[0] - 1
    out_docs, out_scores, counts = batch_outputs(n_queries, k)
    for w in nb.prange(n_workers):
        acc = np.zeros(n_docs, dtype=np.float32)
        touched = np.empty(n_docs, dtype=np.int32)
        for q in range(w, n_queries, n_workers):  # strided: neighbours in a batch cost alike
            lo, hi = q_indptr[q], q_indptr[q + 1]
            counts[q] = search_exhaustive(
                q_terms[lo:hi], q_weights[lo:hi], indptr, docs, impacts, k, allowed, acc, touched, out_docs[q], out_scores[q]
            )
    return out_docs, out_scores, counts
