"""Superblock pruning (Carlson, Xie, He, Yang, SIGIR 2025): block-max pruning one level up.

Consecutive runs of ``c`` blocks form superblocks, each term keeping its largest block maximum
per superblock (:mod:`lsr.index.kernels.superblock_build`). A query first sums those into one
bound per superblock, which costs about 1/c of the block bounds, then visits superblocks from
the highest bound down, computes the block bounds of a visited superblock only, and scores the
blocks among them that may still rank. Block-max pruning computes every block's bound before
scoring anything: on long queries over flat weights that alone costs as much as scoring
exhaustively. Bounds add the query's terms in the same order as the scores, so a superblock's
bound is never below its blocks' bounds, nor those below their documents' scores: with
alpha = 1 nothing that can rank is skipped, and the float rescoring makes the top-k exact.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT
from lsr.index.kernels.blockmax_search import score_and_collect
from lsr.index.kernels.bsearch import lower_bound
from lsr.index.kernels.candidates import keep_above, rescore_margin
from lsr.index.kernels.forward import rescore


@nb.njit(**JIT)
def _superblock_bounds(q_terms, q_weights, sb_indptr, sb_ids, sb_max, sbub):
    """sbub[s] = sum over query terms (in query order) of weight x the term's max in superblock s."""
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        w = q_weights[i]
        for j in range(sb_indptr[t], sb_indptr[t + 1]):
            sbub[sb_ids[j]] += w * np.float32(sb_max[j])


@nb.njit(**JIT)
def _local_bounds(s, c, q_terms, q_weights, tb_indptr, tb_blocks, tb_max, dense_row, dense_rows, sb_indptr, sb_ids,
                  sb_start, n_blocks, local_ub):
    """Block bounds of superblock s's blocks into local_ub[0:c], terms added in query order."""
    b0 = s * c
    n = min(c, n_blocks - b0)
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        w = q_weights[i]
        r = dense_row[t]
        if r >= 0:
            row = dense_rows[r]
            for j in range(n):
                local_ub[j] += w * np.float32(row[b0 + j])
        else:
            lo, hi = sb_indptr[t], sb_indptr[t + 1]
            a = lower_bound(sb_ids, lo, hi, s)
            if a < hi and sb_ids[a] == s:
                end = sb_start[a + 1] if a + 1 < hi else tb_indptr[t + 1]
                for j in range(sb_start[a], end):
                    local_ub[tb_blocks[j] - b0] += w * np.float32(tb_max[j])
    return n


@nb.njit(**JIT)
def _visit(s, c, q_terms, q_weights, block_size, tb_indptr, tb_blocks, tb_max, dense_row, dense_rows, blk_indptr, blk_terms,
           entry_ptr, blk_offsets, blk_impacts, sb_indptr, sb_ids, sb_start, alpha, allowed, k, shrink, slack, heap_s,
           heap_d, size, floor, cand_d, cand_s, n_cand, local_ub, blocks, local):
    """Score the blocks of superblock s whose bounds reach the floor, best bound first.
    Returns the updated (cand_d, cand_s, n_cand, heap size, floor)."""
    n = _local_bounds(s, c, q_terms, q_weights, tb_indptr, tb_blocks, tb_max, dense_row, dense_rows, sb_indptr, sb_ids,
                      sb_start, blk_indptr.shape[0] - 1, local_ub)
    m = 0
    for j in range(n):  # c is small: insertion sort
        if local_ub[j] > 0.0:
            p = m
            while p > 0 and local_ub[blocks[p - 1]] < local_ub[j]:
                blocks[p] = blocks[p - 1]
                p -= 1
            blocks[p] = j
            m += 1
    for j in range(m):
        if alpha * local_ub[blocks[j]] < floor:
            break
        cand_d, cand_s, n_cand, size, floor = score_and_collect(
            s * c + blocks[j], q_terms, q_weights, block_size, blk_indptr, blk_terms, entry_ptr, blk_offsets, blk_impacts,
            local, allowed, k, shrink, slack, heap_s, heap_d, size, floor, cand_d, cand_s, n_cand)
    local_ub[:] = 0.0
    return cand_d, cand_s, n_cand, size, floor


@nb.njit(**JIT)
def search_superblocks(q_terms, q_weights, block_size, tb_indptr, tb_blocks, tb_max, dense_row, dense_rows, blk_indptr,
                       blk_terms, entry_ptr, blk_offsets, blk_impacts, c, sb_indptr, sb_ids, sb_max, sb_start, k, alpha,
                       err_units, allowed, fwd_indptr, fwd_terms, fwd_weights, sbub, qdense, out_docs, out_scores,
                       budget, block_cost):
    """Exact top-k of one query (by float score) by superblock then block pruning; q_terms must
    ascend. A superblock or block is skipped when alpha x its bound is below the candidate floor
    (alpha = 1: safe). ``allowed`` as in search_bmp. sbub (float32, one per superblock) is zero
    on entry and on return. Returns the number of hits, written best first into out_*.

    The superblock of the highest bound is visited first, which sets a floor; only the
    superblocks still reaching it are then sorted and visited, best first. With ``budget`` >= 0
    this is also the planner's probe: once the heap is full, if visiting the superblocks that
    still reach the floor would cost more than ``budget`` (``block_cost`` per block) the search
    gives up and returns -1 (another strategy is cheaper); their count only falls as the floor
    rises, so the first verdict to go on is final."""
    _superblock_bounds(q_terms, q_weights, sb_indptr, sb_ids, sb_max, sbub)
    best = 0
    for s in range(sbub.shape[0]):
        if sbub[s] > sbub[best]:
            best = s
    cand_d = np.empty(max(4 * k, 256), dtype=np.int32)
    cand_s = np.empty(cand_d.shape[0], dtype=np.float32)
    n_cand = 0
    size = 0
    floor = -1.0
    shrink, slack = rescore_margin(q_weights, err_units)
    heap_s = np.empty(k, dtype=np.float32)
    heap_d = np.empty(k, dtype=np.int32)
    local_ub = np.zeros(c, dtype=np.float32)
    blocks = np.empty(c, dtype=np.int64)
    local = np.zeros(block_size, dtype=np.float32)
    if sbub.shape[0] and sbub[best] > 0.0:
        cand_d, cand_s, n_cand, size, floor = _visit(
            best, c, q_terms, q_weights, block_size, tb_indptr, tb_blocks, tb_max, dense_row, dense_rows, blk_indptr,
            blk_terms, entry_ptr, blk_offsets, blk_impacts, sb_indptr, sb_ids, sb_start, alpha, allowed, k, shrink, slack,
            heap_s, heap_d, size, floor, cand_d, cand_s, n_cand, local_ub, blocks, local)
        sbub[best] = 0.0
    n_live = 0
    for s in range(sbub.shape[0]):
        if sbub[s] > 0.0 and alpha * sbub[s] >= floor:
            n_live += 1
    if budget >= 0.0 and size == k:
        if n_live * c * block_cost > budget:
            sbub[:] = 0.0
            return -1
        budget = -1.0
    live = np.empty(n_live, dtype=np.int32)
    n_live = 0
    for s in range(sbub.shape[0]):
        if sbub[s] > 0.0 and alpha * sbub[s] >= floor:
            live[n_live] = s
            n_live += 1
    order = live[np.argsort(-sbub[live], kind="mergesort")]
    bounds = sbub[order]  # descending
    for i in range(n_live):
        s = order[i]
        if alpha * bounds[i] < floor:
            break  # superblocks come best bound first: none later can rank
        if budget >= 0.0 and size == k:
            lo, hi = i, n_live  # the first later superblock whose bound is under the floor
            while lo < hi:
                mid = (lo + hi) >> 1
                if alpha * bounds[mid] >= floor:
                    lo = mid + 1
                else:
                    hi = mid
            if (lo - i) * c * block_cost > budget:
                sbub[:] = 0.0
                return -1
            budget = -1.0
        cand_d, cand_s, n_cand, size, floor = _visit(
            s, c, q_terms, q_weights, block_size, tb_indptr, tb_blocks, tb_max, dense_row, dense_rows, blk_indptr,
            blk_terms, entry_ptr, blk_offsets, blk_impacts, sb_indptr, sb_ids, sb_start, alpha, allowed, k, shrink, slack,
            heap_s, heap_d, size, floor, cand_d, cand_s, n_cand, local_ub, blocks, local)
    n_cand = keep_above(cand_d, cand_s, n_cand, floor)
    sbub[:] = 0.0
    return rescore(q_terms, q_weights, cand_d, n_cand, fwd_indptr, fwd_terms, fwd_weights, k, qdense, out_docs, out_scores)
