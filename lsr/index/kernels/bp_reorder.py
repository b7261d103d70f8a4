"""Document reordering by recursive graph bisection (Dhulipala et al., KDD 2016; the faster
variant of Mackenzie, Mallia, Moffat, Petri, "Tradeoff Options for Bipartite Graph
Partitioning", 2021/2022), on the forward index.

Each range of documents is split in two halves, and documents are swapped between the halves
while that lowers the estimated cost of storing the range's postings: for a term present in
``d1`` of the ``n1`` documents of one half and ``d2`` of the ``n2`` of the other, the log-gap
cost ``d1 log2(n1 / (d1 + 1)) + d2 log2(n2 / (d2 + 1))``. A document's gain from moving is the
sum over its terms of the change in that cost; the left half's documents are sorted by gain, the
right's too, and pairs are swapped while the sum of their gains is positive. The halves are then
bisected in turn, down to ranges of one block: documents sharing terms end up in the same
blocks, which is what makes block maxima tight.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT


@nb.njit(inline="always", **JIT)
def _cost(d, n):
    return d * np.log2(n / (d + 1.0)) if d > 0 else 0.0


@nb.njit(**JIT)
def _bisect(perm, lo, hi, fwd_indptr, fwd_terms, n_iters, deg_l, deg_r, move_lr, move_rl, gains):
    """One bisection of perm[lo:hi] in place (the left half is perm[lo:mid]); deg_*, move_*
    (one per term) are scratch, zero on entry and on return; gains (one per doc) is scratch."""
    mid = (lo + hi) // 2
    n1 = float(mid - lo)
    n2 = float(hi - mid)
    for _ in range(n_iters):
        for p in range(lo, hi):
            d = perm[p]
            for e in range(fwd_indptr[d], fwd_indptr[d + 1]):
                if p < mid:
                    deg_l[fwd_terms[e]] += 1
                else:
                    deg_r[fwd_terms[e]] += 1
        for p in range(lo, hi):  # the cost change of a move, once per term
            d = perm[p]
            for e in range(fwd_indptr[d], fwd_indptr[d + 1]):
                t = fwd_terms[e]
                if move_lr[t] == 0.0 and move_rl[t] == 0.0:
                    a, b = deg_l[t], deg_r[t]
                    now = _cost(a, n1) + _cost(b, n2)
                    move_lr[t] = now - (_cost(a - 1, n1) + _cost(b + 1, n2)) if a > 0 else -1e300
                    move_rl[t] = now - (_cost(a + 1, n1) + _cost(b - 1, n2)) if b > 0 else -1e300
        for p in range(lo, hi):
            d = perm[p]
            g = 0.0
            for e in range(fwd_indptr[d], fwd_indptr[d + 1]):
                g += move_lr[fwd_terms[e]] if p < mid else move_rl[fwd_terms[e]]
            gains[p - lo] = g
        left = np.argsort(-gains[: mid - lo])
        right = np.argsort(-gains[mid - lo : hi - lo])
        old_left = perm[lo:mid].copy()
        old_right = perm[mid:hi].copy()
        swaps = 0
        for i in range(min(left.shape[0], right.shape[0])):
            if gains[left[i]] + gains[mid - lo + right[i]] <= 0.0:
                break
            perm[lo + left[i]] = old_right[right[i]]
            perm[mid + right[i]] = old_left[left[i]]
            swaps += 1
        for p in range(lo, hi):  # scratch back to zero (terms of this range only)
            d = perm[p]
            for e in range(fwd_indptr[d], fwd_indptr[d + 1]):
                t = fwd_terms[e]
                deg_l[t] = 0
                deg_r[t] = 0
                move_lr[t] = 0.0
                move_rl[t] = 0.0
        if swaps == 0:
            break


@nb.njit(**JIT)
def graph_bisection(fwd_indptr, fwd_terms, n_terms, leaf, n_iters):
    """A permutation of the documents (new position -> old) by recursive graph bisection,
    stopping at ranges of at most ``leaf`` documents."""
    n = fwd_indptr.shape[0] - 1
    perm = np.arange(n, dtype=np.int64)
    deg_l = np.zeros(n_terms, dtype=np.int64)
    deg_r = np.zeros(n_terms, dtype=np.int64)
    move_lr = np.zeros(n_terms, dtype=np.float64)
    move_rl = np.zeros(n_terms, dtype=np.float64)
    gains = np.empty(n, dtype=np.float64)
    stack = [(0, n)]
    while len(stack) > 0:
        lo, hi = stack.pop()
        if hi - lo <= leaf:
            continue
        _bisect(perm, lo, hi, fwd_indptr, fwd_terms, n_iters, deg_l, deg_r, move_lr, move_rl, gains)
        mid = (lo + hi) // 2
        stack.append((mid, hi))
        stack.append((lo, mid))
    return perm
