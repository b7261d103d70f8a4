"""One raw query in the form every search kernel takes, and the refusals of a bad one.

The thin single-query entry points (exact and approx) hand the user's term ids and weights
straight to a kernel, which first makes what :meth:`lsr.index.sparse.SparseIndex.prepare`
makes of a batch: so both paths must refuse the same queries with the same words, and
:func:`query_error` is where those words live.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.errors import DataError
from lsr.index.kernels import JIT

# canonical_query's refusals
BAD_TERM, BAD_WEIGHT, BAD_SUM = -1, -2, -3


def weight_limit(impact_max: int) -> float:
    """The largest sum of a query's positive weights whose scores (weight x impact, added in
    float32 by the pruned kernels) stay finite."""
    return float(np.finfo(np.float32).max) / 2 / float(impact_max)


@nb.njit(**JIT)
def canonical_query(terms, weights, vocab_size, limit, keys, out_terms, out_weights):
    """One raw query in the kernels' form: weights <= 0 dropped, terms ascending, a repeated
    term's weights summed in input order. keys, out_* hold at least len(terms) slots. Returns
    the term count, or BAD_TERM / BAD_WEIGHT / BAD_SUM (an id outside the vocabulary, a
    non-finite weight, positive weights summing past ``limit``) for :func:`query_error`."""
    n = terms.shape[0]
    for i in range(n):
        if terms[i] < 0 or terms[i] >= vocab_size:
            return BAD_TERM
    total = 0.0
    for i in range(n):
        if not np.isfinite(weights[i]):
            return BAD_WEIGHT
        if weights[i] > 0.0:
            total += np.float64(np.float32(weights[i]))
    if total > limit:
        return BAD_SUM
    m = 0
    for i in range(n):
        if weights[i] > 0.0:
            keys[m] = (np.int64(terms[i]) << 32) | np.int64(i)
            m += 1
    keys[:m].sort()
    out = -1
    for j in range(m):
        t = np.int32(keys[j] >> 32)
        w = np.float32(weights[keys[j] & 0xFFFFFFFF])
        if out >= 0 and out_terms[out] == t:
            out_weights[out] += w
        else:
            out += 1
            out_terms[out] = t
            out_weights[out] = w
    return out + 1


def query_error(code: int, terms: np.ndarray, weights: np.ndarray, vocab_size: int, limit: float = np.inf) -> DataError:
    """The error for a query canonical_query refused with ``code`` (terms and weights as given,
    possibly several queries' worth for BAD_TERM and BAD_WEIGHT; BAD_SUM takes one query's)."""
    if code == BAD_TERM:
        bad = terms[(terms < 0) | (terms >= vocab_size)][0]
        return DataError(f"query term id {int(bad)} is outside the vocabulary (0..{vocab_size - 1})")
    if code == BAD_WEIGHT:
        return DataError("query weights must be finite")
    total = float(np.maximum(np.asarray(weights, np.float32), 0).astype(np.float64).sum())
    return DataError(f"query weights sum to {total:.3g}: at most {limit:.3g} keeps scores finite in float32")
