"""Exhaustive top-k over CSR postings: the exact reference every pruned strategy must equal.

Scores accumulate term-at-a-time in float64 from the postings' float weights, query terms in
ascending order: a document's score is then the very sum, in the very order, that rescoring its
forward row gives (:func:`lsr.index.kernels.forward.rescore`), so exhaustive search needs no
candidates and no rescoring, and ranks exactly as the pruned strategies do. A touched-list makes
reset and selection cost O(matched docs), not O(corpus).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT
from lsr.index.kernels.topk import top_k_of

DENSE_SHARE = 4


@nb.njit(**JIT)
def search_exhaustive(q_terms, q_weights, indptr, docs, weights, k, allowed, acc, touched, found, out_docs, out_scores):
    """Exact top-k of one query by float score (sum of query weight x document weight).

    Only documents with ``allowed[d]`` are hits when ``allowed`` (uint8, one per doc) is not
    empty: deletions and filters are applied here, so k live hits come back. acc (float64,
    one slot per doc) must be zero on entry and is zero again on return; touched (int32) and
    found (float64), one slot per doc, are scratch. Docs sharing no term with the query are
    not hits. Returns the number of hits, written best first into out_* (float64 scores).

    A query whose postings outnumber the documents / DENSE_SHARE touches most of them: it skips
    the touched-list (a branch per posting) and scans the accumulator instead.
    """
    n_docs = acc.shape[0]
    postings = 0
    for i in range(q_terms.shape[0]):
        postings += indptr[q_terms[i] + 1] - indptr[q_terms[i]]
    dense = postings * DENSE_SHARE > n_docs
    n_touched = 0
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        w = np.float64(q_weights[i])
        if dense:
            for j in range(indptr[t], indptr[t + 1]):
                acc[docs[j]] += w * np.float64(weights[j])
            continue
        for j in range(indptr[t], indptr[t + 1]):
            d = docs[j]
            if acc[d] == 0.0:
                touched[n_touched] = d
                n_touched += 1
            acc[d] += w * np.float64(weights[j])
    masked = allowed.shape[0] > 0
    n = 0
    for i in range(n_docs if dense else n_touched):
        d = i if dense else touched[i]
        s = acc[d]
        if s > 0.0:
            acc[d] = 0.0
            if not masked or allowed[d]:
                touched[n] = d  # n <= i: compacting in place
                found[n] = s
                n += 1
    return top_k_of(touched, found, n, k, out_docs, out_scores)
