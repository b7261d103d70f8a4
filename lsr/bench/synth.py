"""Seeded synthetic corpora grown from real encodings, keeping their statistics.

Each synthetic document perturbs a random real seed document: it drops a fraction of the
seed's terms, jitters the kept weights, and refills the dropped slots with terms borrowed from
another real document that shares one of the seed's terms. Lengths, the term-frequency
spread, the weight distribution and co-occurrence all follow the real corpus.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import scipy.sparse as sp

from lsr.data import SparseVectors


@nb.njit(nogil=True, cache=True)
def _generate(seeds, indptr, indices, values, p_indptr, p_docs, out_indptr, out_indices, out_values,
              counts, p_drop, sigma, w_max, rng_seed):
    np.random.seed(rng_seed)
    for i in range(seeds.shape[0]):
        s = seeds[i]
        lo, hi = indptr[s], indptr[s + 1]
        base = out_indptr[i]
        n = 0
        dropped = 0
        for j in range(lo, hi):
            if np.random.random() < p_drop:
                dropped += 1
                continue
            out_indices[base + n] = indices[j]
            out_values[base + n] = min(w_max, values[j] * np.exp(sigma * np.random.standard_normal()))
            n += 1
        if dropped > 0 and hi > lo:
            t = indices[lo + np.random.randint(hi - lo)]
            r = p_docs[p_indptr[t] + np.random.randint(p_indptr[t + 1] - p_indptr[t])]
            r_lo, r_hi = indptr[r], indptr[r + 1]
            filled = 0
            for _ in range(4 * dropped):  # retry draws that hit a term the doc already has
                if filled == dropped:
                    break
                j = r_lo + np.random.randint(r_hi - r_lo)
                term = indices[j]
                dup = False
                for m in range(n):
                    if out_indices[base + m] == term:
                        dup = True
                        break
                if not dup:
                    out_indices[base + n] = term
                    out_values[base + n] = min(w_max, values[j] * np.exp(sigma * np.random.standard_normal()))
                    n += 1
                    filled += 1
        order = np.argsort(out_indices[base : base + n])
        out_indices[base : base + n] = out_indices[base : base + n][order]
        out_values[base : base + n] = out_values[base : base + n][order]
        counts[i] = n


def synthesize(real: SparseVectors, n_docs: int, *, seed: int = 0, p_drop: float = 0.3, sigma: float = 0.15) -> SparseVectors:
    """``n_docs`` synthetic documents over ``real``'s vocabulary (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, len(real), n_docs)
    bound = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.diff(real.indptr)[seeds], out=bound[1:])
    out_indices = np.empty(bound[-1], dtype=np.int32)
    out_values = np.empty(bound[-1], dtype=np.float32)
    counts = np.zeros(n_docs, dtype=np.int64)
    by_term = sp.csr_matrix((real.values, real.indices, real.indptr), shape=(len(real), len(real.vocab))).tocsc()
    _generate(seeds, real.indptr, real.indices, real.values, by_term.indptr.astype(np.int64),
              by_term.indices.astype(np.int32), bound, out_indices, out_values, counts, p_drop, sigma,
              np.float32(real.values.max()), seed)
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    # each doc filled a prefix of its slot range; gather those prefixes contiguously
    kept = np.repeat(bound[:-1] - indptr[:-1], counts) + np.arange(indptr[-1])
    return SparseVectors(indptr, out_indices[kept], out_values[kept], real.vocab)
