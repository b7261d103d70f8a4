"""Numba kernels for Block-Max Pruning (Mallia, Suel, Tonellotto, SIGIR 2024).

Doc ids are cut into fixed blocks. Each term keeps its per-block maximum impact; a query sums
those into an upper bound per block, visits blocks from the highest bound down, scores each
visited block through a block-local forward index, and stops once no remaining bound can reach
the candidate floor of the current k-th score (:mod:`lsr.index.kernels.candidates`). Bounds and
scores add the query's terms in the same order, so by the monotonicity of float rounding a bound
is never below a score it covers: the safe mode keeps every candidate, and the float rescoring
returns the exact top-k, ties included.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT
from lsr.index.kernels.bsearch import lower_bound
from lsr.index.kernels.candidates import floor_of, keep_above, make_room, rescore_margin
from lsr.index.kernels.forward import rescore
from lsr.index.kernels.topk import heap_offer

N_BUCKETS = 2048


@nb.njit(**JIT)
def _block_bounds(q_terms, q_weights, tb_indptr, tb_blocks, tb_max, dense_row, dense_rows, ub):
    """ub[b] = sum over query terms (in query order) of weight x the term's max impact in block b."""
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        w = q_weights[i]
        r = dense_row[t]
        if r >= 0:
            row = dense_rows[r]
            for b in range(ub.shape[0]):
                ub[b] += w * np.float32(row[b])
        else:
            for j in range(tb_indptr[t], tb_indptr[t + 1]):
                ub[tb_blocks[j]] += w * np.float32(tb_max[j])


@nb.njit(**JIT)
def _score_block(b, q_terms, q_weights, blk_indptr, blk_terms, entry_ptr, blk_offsets, blk_impacts, local):
    """Exact scores of block b's docs into local[offset]; returns how many slots were written."""
    lo = blk_indptr[b]
    hi = blk_indptr[b + 1]
    used = 0
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        # query terms ascend, so the search for the next one starts where this one ended
        a = lower_bound(blk_terms, lo, hi, t)
        lo = a
        if a < hi and blk_terms[a] == t:
            w = q_weights[i]
            for j in range(entry_ptr[a], entry_ptr[a + 1]):
                off = blk_offsets[j]
                local[off] += w * np.float32(blk_impacts[j])
                if off >= used:
                    used = off + 1
    return used


@nb.njit(**JIT)
def score_and_collect(b, q_terms, q_weights, block_size, blk_indptr, blk_terms, entry_ptr, blk_offsets, blk_impacts, local,
                      allowed, k, shrink, slack, heap_s, heap_d, size, floor, cand_d, cand_s, n_cand):
    """Score block b; offer its allowed docs at or above the candidate floor to the k-heap and the
    candidate buffer. Returns the updated (cand_d, cand_s, n_cand, heap size, floor)."""
    used = _score_block(b, q_terms, q_weights, blk_indptr, blk_terms, entry_ptr, blk_offsets, blk_impacts, local)
    base = b * block_size
    masked = allowed.shape[0] > 0
    for off in range(used):
        s = local[off]
        if s > 0.0:
            if (not masked or allowed[base + off]) and s >= floor:
                if n_cand == cand_d.shape[0]:
                    cand_d, cand_s, n_cand = make_room(cand_d, cand_s, n_cand, floor)
                cand_d[n_cand] = base + off
                cand_s[n_cand] = s
                n_cand += 1
                size = heap_offer(heap_s, heap_d, size, k, s, base + off)
                floor = floor_of(heap_s, size, k, shrink, slack)
            local[off] = 0.0
    return cand_d, cand_s, n_cand, size, floor


@nb.njit(**JIT)
def search_bmp(q_terms, q_weights, block_size, tb_indptr, tb_blocks, tb_max, dense_row, dense_rows, blk_indptr, blk_terms,
               entry_ptr, blk_offsets, blk_impacts, k, alpha, err_units, allowed, fwd_indptr, fwd_terms, fwd_weights, ub,
               qdense, out_docs, out_scores):
    """Exact top-k of one query (by float score) by block-max pruning; q_terms must ascend.

    A block is skipped when alpha x its bound is below the candidate floor of the current
    k-th quantized score (alpha = 1: safe, and exact after the float rescoring of
    :mod:`lsr.index.kernels.candidates`). With ``allowed`` (uint8, one per doc) not empty, only
    allowed docs are hits; bounds stay true upper bounds, so the search stays exact. ub (float32,
    one slot per block) must be zero on entry; it is zeroed again before returning. Returns
    the number of hits, written best first into out_* (float64 scores).
    """
    n_blocks = ub.shape[0]
    _block_bounds(q_terms, q_weights, tb_indptr, tb_blocks, tb_max, dense_row, dense_rows, ub)
    top = np.float32(0.0)
    n_live = 0
    for b in range(n_blocks):
        if ub[b] > 0.0:
            n_live += 1
            if ub[b] > top:
                top = ub[b]
    cand_d = np.empty(max(4 * k, 256), dtype=np.int32)
    cand_s = np.empty(cand_d.shape[0], dtype=np.float32)
    n_cand = 0
    size = 0
    floor = -1.0
    if n_live > 0:
        shrink, slack = rescore_margin(q_weights, err_units)
        heap_s = np.empty(k, dtype=np.float32)
        heap_d = np.empty(k, dtype=np.int32)
        # bucket the live blocks by bound (a linear-time partial sort), best bucket first
        counts = np.zeros(N_BUCKETS + 1, dtype=np.int64)
        bucket_top = np.zeros(N_BUCKETS, dtype=np.float32)
        # float64: with tiny bounds (query weights near float32's smallest normal) a float32
        # scale overflows to inf and the bucket index to garbage
        scale = np.float64(N_BUCKETS - 1) / np.float64(top)
        for b in range(n_blocks):
            if ub[b] > 0.0:
                bk = N_BUCKETS - 1 - min(N_BUCKETS - 1, int(np.float64(ub[b]) * scale))
                counts[bk + 1] += 1
                if ub[b] > bucket_top[bk]:
                    bucket_top[bk] = ub[b]
        for i in range(N_BUCKETS):
            counts[i + 1] += counts[i]
        order = np.empty(n_live, dtype=np.int32)
        fill = counts[:-1].copy()
        for b in range(n_blocks):
            if ub[b] > 0.0:
                bk = N_BUCKETS - 1 - min(N_BUCKETS - 1, int(np.float64(ub[b]) * scale))
                order[fill[bk]] = b
                fill[bk] += 1
        local = np.zeros(block_size, dtype=np.float32)
        for bk in range(N_BUCKETS):
            if counts[bk] == counts[bk + 1]:
                continue
            if alpha * bucket_top[bk] < floor:
                break  # every later bucket is bounded by this one's top
            for i in range(counts[bk], counts[bk + 1]):
                b = order[i]
                if alpha * ub[b] < floor:
                    continue
                cand_d, cand_s, n_cand, size, floor = score_and_collect(
                    b, q_terms, q_weights, block_size, blk_indptr, blk_terms, entry_ptr, blk_offsets, blk_impacts, local,
                    allowed, k, shrink, slack, heap_s, heap_d, size, floor, cand_d, cand_s, n_cand)
        n_cand = keep_above(cand_d, cand_s, n_cand, floor)
    ub[:] = 0.0
    return rescore(q_terms, q_weights, cand_d, n_cand, fwd_indptr, fwd_terms, fwd_weights, k, qdense, out_docs, out_scores)
