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
from lsr.index.kernels.topk import HEAP_K, raise_floor, top_k_of

DENSE_SHARE = 4


@nb.njit(**JIT)
def _accumulate(q_terms, q_weights, indptr, docs, weights, acc, touched, dense):
    """acc += the query's postings; returns how many new documents it listed in touched
    (none when ``dense``: the caller then scans acc)."""
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
            touched[n_touched] = d  # kept only when new: no branch to mispredict
            n_touched += acc[d] == 0.0
            acc[d] += w * np.float64(weights[j])
    return n_touched


@nb.njit(**JIT)
def search_exhaustive(q_terms, q_weights, indptr, docs, weights, k, allowed, acc, touched, found, out_docs, out_scores):
    """Exact top-k of one query by float score (sum of query weight x document weight).

    Only documents with ``allowed[d]`` are hits when ``allowed`` (uint8, one per doc) is not
    empty: deletions and filters are applied here, so k live hits come back. acc (float64,
    one slot per doc) must be zero on entry and is zero again on return; touched (int32) and
    found (float64), one slot per doc, are scratch. Docs sharing no term with the query are
    not hits. Returns the number of hits, written best first into out_* (float64 scores).

    A query whose postings outnumber the documents / DENSE_SHARE touches most of them: it skips
    the touched-list and scans the accumulator instead. Marking a document touched is a store
    and an add, not a branch: whether a posting's document is new is a coin flip on the second
    and later terms, and a mispredicted branch per posting doubled the accumulation's cost.
    """
    n_docs = acc.shape[0]
    postings = 0
    for i in range(q_terms.shape[0]):
        postings += indptr[q_terms[i] + 1] - indptr[q_terms[i]]
    dense = postings * DENSE_SHARE > n_docs
    n_touched = _accumulate(q_terms, q_weights, indptr, docs, weights, acc, touched, dense)
    n_scan = n_docs if dense else n_touched
    if k <= HEAP_K:
        n = _gather_above_floor(acc, touched, found, n_scan, dense, allowed, k)
    else:
        n = _gather(acc, touched, found, n_scan, dense, allowed)
    return top_k_of(touched, found, n, k, out_docs, out_scores)


@nb.njit(**JIT)
def _gather(acc, touched, found, n_scan, dense, allowed):
    """Move the allowed hits' scores from acc (zeroing it) into touched/found, compacted in
    place; returns their count. Scans every doc when ``dense``, else touched[:n_scan]."""
    masked = allowed.shape[0] > 0
    n = 0
    for i in range(n_scan):
        d = i if dense else touched[i]
        s = acc[d]
        if s > 0.0:
            acc[d] = 0.0
            if not masked or allowed[d]:
                touched[n] = d  # n <= i
                found[n] = s
                n += 1
    return n


@nb.njit(**JIT)
def _gather_above_floor(acc, touched, found, n_scan, dense, allowed, k):
    """_gather keeping only the hits not below the k-th best score gathered before them (a
    heap of k scores, raised as it goes): a few times k hits, where _gather keeps them all.
    Its own loop: the floor test in _gather's would stop the compiler vectorizing it there
    (k > HEAP_K: 17% slower on splade-gcide), and a helper taking arrays per hit costs two
    atomic reference counts per call (3x slower)."""
    masked = allowed.shape[0] > 0
    floor = np.full(k, -np.inf)
    lowest = floor[0]  # in a register: stores to found could alias floor
    n = 0
    for i in range(n_scan):
        d = i if dense else touched[i]
        s = acc[d]
        if s > 0.0:
            acc[d] = 0.0
            if (not masked or allowed[d]) and s >= lowest:
                if s > lowest:
                    raise_floor(floor, s)
                    lowest = floor[0]
                touched[n] = d  # n <= i
                found[n] = s
                n += 1
    return n
