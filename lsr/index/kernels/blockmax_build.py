"""Building the block-max layout: per-block entry counts, then a counting-sort fill.

Two passes over term-major postings give the block-local forward index (block -> term ->
docs) and each term's (block, max impact) list, without sorting.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT


@nb.njit(**JIT)
def count_block_entries(p_indptr, p_docs, block_size, n_blocks):
    """Per block: postings and distinct terms it holds (first pass of the block layout)."""
    n_post = np.zeros(n_blocks, dtype=np.int64)
    n_terms = np.zeros(n_blocks, dtype=np.int64)
    n_term_blocks = np.zeros(p_indptr.shape[0] - 1, dtype=np.int64)
    for t in range(p_indptr.shape[0] - 1):
        last = -1
        for j in range(p_indptr[t], p_indptr[t + 1]):
            b = p_docs[j] // block_size
            n_post[b] += 1
            if b != last:
                n_terms[b] += 1
                n_term_blocks[t] += 1
                last = b
    return n_post, n_terms, n_term_blocks


@nb.njit(**JIT)
def fill_blocks(p_indptr, p_docs, p_impacts, block_size, blk_indptr, post_start, tb_indptr,
                blk_terms, entry_ptr, blk_offsets, blk_impacts, tb_blocks, tb_max):
    """Second pass: the block-local forward index and each term's (block, max impact) list.

    Walking postings term by term (docs ascending) visits every block's entries in term order,
    so both layouts fill by counting sort, without sorting.
    """
    term_fill = blk_indptr[:-1].copy()
    post_fill = post_start[:-1].copy()
    for t in range(p_indptr.shape[0] - 1):
        last = -1
        tb = tb_indptr[t] - 1
        e = -1
        for j in range(p_indptr[t], p_indptr[t + 1]):
            d = p_docs[j]
            b = d // block_size
            if b != last:
                e = term_fill[b]
                term_fill[b] += 1
                blk_terms[e] = t
                entry_ptr[e] = post_fill[b]
                tb += 1
                tb_blocks[tb] = b
                tb_max[tb] = 0
                last = b
            blk_offsets[post_fill[b]] = d - b * block_size
            blk_impacts[post_fill[b]] = p_impacts[j]
            post_fill[b] += 1
            if p_impacts[j] > tb_max[tb]:
                tb_max[tb] = p_impacts[j]
    entry_ptr[-1] = post_fill[-1] if post_fill.shape[0] else 0


@nb.njit(**JIT)
def fill_dense_rows(tb_indptr, tb_blocks, tb_max, dense_terms, n_blocks, dtype_example):
    """Dense block-max rows for the terms present in many blocks (summed with a plain loop)."""
    rows = np.zeros((dense_terms.shape[0], n_blocks), dtype=dtype_example.dtype)
    for r in range(dense_terms.shape[0]):
        t = dense_terms[r]
        for i in range(tb_indptr[t], tb_indptr[t + 1]):
            rows[r, tb_blocks[i]] = tb_max[i]
    return rows
