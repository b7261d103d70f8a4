"""Candidates for float rescoring: the documents whose quantized score may still put them in the
float top-k.

Pruned and exhaustive strategies rank by quantized impacts (fast, compact), but the top-k the
user gets is that of the float weights. A posting's impact is off by at most ``err`` impact units
from its float weight, and float32 sums are off by a relative ``gamma``; so if the k-th best
quantized score is ``kth``, every document of the float top-k has a quantized score of at least
``kth * shrink - slack`` (see :func:`rescore_margin`). Such documents are kept as candidates and
rescored exactly (:func:`lsr.index.kernels.forward.rescore`); nothing below that floor can rank.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT


@nb.njit(**JIT)
def rescore_margin(q_weights, err_units):
    """(shrink, slack) of the candidate floor ``kth * shrink - slack`` of one query.

    With E = err_units x the sum of the query weights (the largest gap between a quantized and a
    float score, in impact units) and gamma bounding the relative float32 error of a sum of
    n + 1 rounded steps: k documents reach kth / (1 + gamma) - E in float, so a document of the
    float top-k reaches (1 - gamma) (kth / (1 + gamma) - 2E) quantized.
    """
    total = 0.0
    for i in range(q_weights.shape[0]):
        total += np.float64(q_weights[i])
    gamma = 2.0 * (q_weights.shape[0] + 2) * 2.0**-24
    return (1.0 - gamma) / (1.0 + gamma), 2.0 * total * err_units


@nb.njit(inline="always", **JIT)
def floor_of(heap_s, size, k, shrink, slack):
    """The candidate floor while the heap holds ``size`` of k hits (-1 until it is full: all count)."""
    if size < k:
        return -1.0
    return np.float64(heap_s[0]) * shrink - slack


@nb.njit(**JIT)
def keep_above(docs, scores, n, floor):
    """Compact docs[:n] / scores[:n] to the entries with score >= floor; returns their count."""
    m = 0
    for i in range(n):
        if scores[i] >= floor:
            docs[m] = docs[i]
            scores[m] = scores[i]
            m += 1
    return m


@nb.njit(**JIT)
def make_room(docs, scores, n, floor):
    """A full candidate buffer with room again: entries under ``floor`` dropped, and its size
    doubled when that frees less than half. Returns (docs, scores, n)."""
    n = keep_above(docs, scores, n, floor)
    if 2 * n > docs.shape[0]:
        grown_d = np.empty(2 * docs.shape[0], dtype=docs.dtype)
        grown_s = np.empty(2 * docs.shape[0], dtype=scores.dtype)
        grown_d[:n] = docs[:n]
        grown_s[:n] = scores[:n]
        return grown_d, grown_s, n
    return docs, scores, n
