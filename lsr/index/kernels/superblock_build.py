"""Superblock bounds from the block maxima: per term, each run of ``c`` consecutive blocks it
occurs in summarized by the largest of its block maxima (Carlson, Xie, He, Yang, "Dynamic
Superblock Pruning", SIGIR 2025), and where that run starts in the term's block list.

Derived from the block-max layout in one pass (no document is read), so an index needs no
extra files: the layout is built when superblock search is first used.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT


@nb.njit(**JIT)
def build_superblocks(tb_indptr, tb_blocks, tb_max, c):
    """(sb_indptr int64 [vocab + 1], sb_ids int32, sb_max (impact dtype), sb_start int64: where
    the run starts in tb_*) for superblocks of ``c`` blocks. A term's superblocks ascend, as its
    blocks do."""
    n_terms = tb_indptr.shape[0] - 1
    sb_indptr = np.zeros(n_terms + 1, dtype=np.int64)
    for t in range(n_terms):
        last = -1
        n = 0
        for j in range(tb_indptr[t], tb_indptr[t + 1]):
            s = tb_blocks[j] // c
            if s != last:
                n += 1
                last = s
        sb_indptr[t + 1] = sb_indptr[t] + n
    total = sb_indptr[n_terms]
    sb_ids = np.empty(total, dtype=np.int32)
    sb_max = np.zeros(total, dtype=tb_max.dtype)
    sb_start = np.empty(total, dtype=np.int64)
    for t in range(n_terms):
        e = sb_indptr[t] - 1
        last = -1
        for j in range(tb_indptr[t], tb_indptr[t + 1]):
            s = tb_blocks[j] // c
            if s != last:
                e += 1
                sb_ids[e] = s
                sb_start[e] = j
                last = s
            if tb_max[j] > sb_max[e]:
                sb_max[e] = tb_max[j]
    return sb_indptr, sb_ids, sb_max, sb_start
