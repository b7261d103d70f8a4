"""Numba kernels for approximate search over clustered posting lists with block summaries.

The idea is Seismic's (Bruch, Nardini, Rulli, Venturini, SIGIR 2024): keep each term's heaviest
postings, cluster every kept list into blocks of similar documents, summarize each block by the
per-term maximum of its documents (trimmed to most of its mass, quantized to one byte), and at
query time score a block's documents only when the query's dot product with its summary is close
enough to the current k-th score. Documents are scored exactly, from a compact forward index
(each document's narrow term ids then quantized impacts, in one run) against a dense float32
query by :func:`lsr.index.kernels.forward.dot_packed`, the one definition of a document's impact score:
only which documents get scored is approximate.

Nothing here allocates per query: every buffer is caller-owned scratch (see
:class:`lsr.index.approx.ApproxSearcher`), so one call costs its work plus the dispatch.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT
from lsr.index.kernels.bits import field, next_set, nth_set_after
from lsr.index.kernels.forward import dot_packed, packed_entries
from lsr.index.kernels.prefetch import prefetch, prefetch_range
from lsr.index.kernels.query import canonical_query
from lsr.index.kernels.topk import batch_outputs, heap_drain, heap_offer

# stats slots filled by search_approx (summed over a batch): what a query's time is spent on
STAT_LISTS, STAT_SUMMARY_ENTRIES, STAT_BLOCKS_SCORED, STAT_BLOCKS_SKIPPED, STAT_DOCS_SCORED, STAT_DOC_ENTRIES = range(6)
N_STATS = 6
_STATS_STRIDE = 16  # int64 slots a batch worker's stats row takes: two 64-byte lines
_HIGH = np.int64(0x7FFFFFFF)
_ONE = np.uint64(1)
# summary terms per checkpoint: a term's run is found from its checkpoint by skipping up to 15
# runs' start bits (mostly within one 64-bit window, by popcount); a u32 checkpoint per 16 terms
# costs 0.25 bytes a term, where layout 3 stored a u16 offset per term
CHECKPOINT = 16
_CK_SHIFT = np.uint64(CHECKPOINT.bit_length() - 1)
_CK_MASK = np.uint64(CHECKPOINT - 1)


@nb.njit(inline="always", **JIT)
def _descending_key(bits, i):
    """Sort key of a non-negative float32 (its bit pattern, which orders like the value) so
    that ascending keys are descending values, ties by ascending ``i`` (a stable sort's order)."""
    return ((_HIGH - np.int64(bits)) << 32) | np.int64(i)


@nb.njit(**JIT)
def _summary_dots(t, q_terms, q_weights, n_q, lst_comp_ptr, comp_terms, comp_ckpt, ent_first, ent_blk, blk_bits,
                  ent_code, blk_scale, b_lo, n_blocks, dots, probe, stats):
    """dots[:n_blocks] = the query's dot products with the summaries of term t's blocks,
    touching only the entries of query terms.

    Each query term is found in the list's sorted summary terms by a binary search, all of them
    in lock step (probe holds one position per query term): one search is a chain of dependent,
    unpredictable steps, while a round of independent ones overlaps its cache misses and needs
    no branch. A found term's run of entries starts at the r-th start bit after its checkpoint
    (r = its position past the checkpoint's term) and ends at the next start bit. The entries
    are then added in query-term order, as a merge would add them."""
    for j in range(n_blocks):
        dots[j] = 0.0
    lo = np.uint64(lst_comp_ptr[t])
    hi = np.uint64(lst_comp_ptr[t + 1])
    if lo == hi:
        return
    # asked for again, though search_approx asked for it while scoring the previous list: a
    # variant that asked once, ahead of the previous list's summaries, was 5-10% slower (real set)
    prefetch_range(comp_terms, lo, hi)
    for i in range(n_q):
        probe[i] = lo
    n = hi - lo
    while n > _ONE:  # invariant: the answer is in probe[i] .. probe[i] + n
        half = n >> _ONE
        for i in range(n_q):
            b = np.uint64(probe[i])
            probe[i] = b + (half if comp_terms[b + half - _ONE] < q_terms[i] else np.uint64(0))
        n -= half
    # then the same for the next two dependent reads of each found term (its checkpoint, the
    # start bits and entries near it): ask for all of them before reading any
    for i in range(n_q):
        a = np.uint64(probe[i])
        if comp_terms[a] < q_terms[i]:
            a += _ONE
        if a < hi and comp_terms[a] == q_terms[i]:
            probe[i] = a
            prefetch(comp_ckpt, a >> _CK_SHIFT)
        else:
            probe[i] = -1
    width = np.uint64(blk_bits)
    for i in range(n_q):
        if probe[i] >= 0:
            e = np.uint64(comp_ckpt[np.uint64(probe[i]) >> _CK_SHIFT])
            prefetch(ent_first, e >> np.uint64(6))
            prefetch(ent_blk, (e * width) >> np.uint64(6))
            prefetch(ent_code, e)
    mask = (_ONE << width) - _ONE
    n_entries = 0
    for i in range(n_q):
        if probe[i] >= 0:
            a = np.uint64(probe[i])
            w = q_weights[i]
            e_lo = np.uint64(comp_ckpt[a >> _CK_SHIFT])
            r = a & _CK_MASK
            if r:
                e_lo = nth_set_after(ent_first, e_lo, r)
            e_hi = next_set(ent_first, e_lo + _ONE)
            for e in range(e_lo, e_hi):  # unsigned: no wrap-around per load
                dots[field(ent_blk, e, width, mask)] += w * np.float32(ent_code[e])
            n_entries += np.int64(e_hi - e_lo)
    for j in range(n_blocks):
        dots[j] *= blk_scale[b_lo + j]
    stats[STAT_SUMMARY_ENTRIES] += n_entries


@nb.njit(**JIT)
def search_approx(q_terms, q_weights, n_q, query_cut, heap_factor, k, lst_blk_ptr, blk_doc_ptr, blk_docs, lst_comp_ptr,
                  comp_terms, comp_ckpt, ent_first, ent_blk, blk_bits, ent_code, blk_scale, fwd_ptr, fwd_rows, fwd_impacts,
                  allowed, qdense, visited, seen, dots, order, heap_s, heap_d, out_docs, out_scores, stats):
    """Approximate top-k of one query (its first n_q terms, ascending, weights > 0).

    Walks the lists of the ``query_cut`` heaviest query terms, heaviest first (the first list's
    blocks best summary first, so the heap fills with good hits early). A block is skipped when
    its summary dot product is below ``heap_factor`` x the current k-th score; the others have
    their documents' whole forward rows prefetched, then scored exactly with the whole query, each once.
    heap_factor = 0 with every term kept and unpruned lists scores every matching document: the
    exhaustive top-k. With ``allowed`` (uint8, one per doc) not empty, other documents are
    neither scored nor hits.
    Scratch: qdense (float32, one per term) and visited (uint8, one per doc) are zero on entry
    and on return; seen (int32, one per doc), dots (float32) with a slot per block of the
    longest list, order (int64) with that many plus two per query term, heap_* with k slots.
    Adds work counts into stats; returns the hit count, written best first into out_*.
    """
    for i in range(n_q):
        qdense[q_terms[i]] = q_weights[i]
    n_cut = min(query_cut, n_q)
    # heaviest query terms first, kept in order's tail (the head sorts the first list's blocks;
    # the n_q slots before the tail are the summary searches' probes)
    tail = order.shape[0] - n_q
    wbits = q_weights[:n_q].view(np.int32)
    for i in range(n_q):
        order[tail + i] = _descending_key(wbits[i], i)
    order[tail:].sort()
    for c in range(n_cut):  # every walked list's pointers, asked for at once rather than one list at a time
        t = q_terms[order[tail + c] & 0xFFFFFFFF]
        prefetch(lst_blk_ptr, t)
        prefetch(lst_comp_ptr, t)
    size = 0
    n_seen = 0
    masked = allowed.shape[0] > 0
    dbits = dots.view(np.int32)
    for c in range(n_cut):
        t = q_terms[order[tail + c] & 0xFFFFFFFF]
        b_lo = lst_blk_ptr[t]
        n_blocks = lst_blk_ptr[t + 1] - b_lo
        if n_blocks == 0:
            continue
        stats[STAT_LISTS] += 1
        _summary_dots(t, q_terms, q_weights, n_q, lst_comp_ptr, comp_terms, comp_ckpt, ent_first, ent_blk, blk_bits,
                      ent_code, blk_scale, b_lo, n_blocks, dots, order[tail - n_q:tail], stats)
        if c + 1 < n_cut:  # the next list's summary terms and postings arrive while this one's documents are scored
            t_next = q_terms[order[tail + c + 1] & 0xFFFFFFFF]
            prefetch_range(comp_terms, lst_comp_ptr[t_next], lst_comp_ptr[t_next + 1])
            prefetch_range(comp_ckpt, np.uint64(lst_comp_ptr[t_next]) >> _CK_SHIFT,
                           (np.uint64(lst_comp_ptr[t_next + 1]) >> _CK_SHIFT) + _ONE)
            prefetch_range(blk_doc_ptr, lst_blk_ptr[t_next], lst_blk_ptr[t_next + 1] + 1)
            prefetch_range(blk_scale, lst_blk_ptr[t_next], lst_blk_ptr[t_next + 1])
            prefetch_range(blk_docs, blk_doc_ptr[lst_blk_ptr[t_next]], blk_doc_ptr[lst_blk_ptr[t_next + 1]])
        if c == 0:
            for j in range(n_blocks):
                order[j] = _descending_key(dbits[j], j)
            order[:n_blocks].sort()
        for r in range(n_blocks):
            j = (order[r] & 0xFFFFFFFF) if c == 0 else r
            if size == k and dots[j] < heap_factor * heap_s[0]:
                stats[STAT_BLOCKS_SKIPPED] += 1
                continue
            stats[STAT_BLOCKS_SCORED] += 1
            b = b_lo + j
            # unsigned positions and ids below: Numba then adds no negative-index wrap-around
            p_lo, p_hi = np.uint64(blk_doc_ptr[b]), np.uint64(blk_doc_ptr[b + 1])
            for p in range(p_lo, p_hi):  # ask for every unscored document's whole row before scoring any
                d = np.uint64(blk_docs[p])
                if not visited[d]:
                    prefetch_range(fwd_rows, fwd_ptr[d], fwd_ptr[d + _ONE])
            for p in range(p_lo, p_hi):
                d = np.uint64(blk_docs[p])
                if visited[d] or (masked and not allowed[d]):
                    continue
                visited[d] = 1
                seen[n_seen] = d
                n_seen += 1
                lo, hi = fwd_ptr[d], fwd_ptr[d + _ONE]
                s = dot_packed(qdense, fwd_rows, fwd_impacts, lo, hi)
                stats[STAT_DOC_ENTRIES] += packed_entries(lo, hi, fwd_rows.itemsize // fwd_impacts.itemsize)
                if s > 0.0:
                    size = heap_offer(heap_s, heap_d, size, k, s, np.int32(d))
    stats[STAT_DOCS_SCORED] += n_seen
    for i in range(n_seen):
        visited[seen[i]] = 0
    for i in range(n_q):
        qdense[q_terms[i]] = 0.0
    return heap_drain(heap_s, heap_d, size, out_docs, out_scores)


@nb.njit(**JIT)
def search_approx_raw(terms, weights, limit, query_cut, heap_factor, k, scale, lst_blk_ptr, blk_doc_ptr, blk_docs,
                      lst_comp_ptr, comp_terms, comp_ckpt, ent_first, ent_blk, blk_bits, ent_code, blk_scale, fwd_ptr,
                      fwd_rows, fwd_impacts, allowed, q_terms, q_weights, qdense, visited, seen, dots, order, heap_s, heap_d,
                      out_docs, out_scores, stats):
    """canonical_query then search_approx: the whole single-query path in one call. q_terms and
    q_weights hold at least len(terms) slots, order two per term beyond its blocks' part.
    out_scores gets each float32 score times ``scale`` in out_scores' own precision: a float64
    out_scores and the index's scale give the index's units with no numpy call after, 1.0 keeps
    impact units. Returns the hit count, or canonical_query's refusal."""
    n_q = canonical_query(terms, weights, lst_blk_ptr.shape[0] - 1, limit, order[order.shape[0] - terms.shape[0]:], q_terms,
                          q_weights)
    if n_q < 0:
        return n_q
    n = search_approx(q_terms, q_weights, n_q, query_cut, heap_factor, k, lst_blk_ptr, blk_doc_ptr, blk_docs,
                      lst_comp_ptr, comp_terms, comp_ckpt, ent_first, ent_blk, blk_bits, ent_code, blk_scale, fwd_ptr,
                      fwd_rows, fwd_impacts, allowed, qdense, visited, seen, dots, order, heap_s, heap_d, out_docs, out_scores,
                      stats)
    for i in range(n):
        out_scores[i] = np.float64(out_scores[i]) * scale
    return n


@nb.njit(parallel=True, **JIT)
def search_approx_batch(q_indptr, terms, weights, limit, query_cut, heap_factor, k, lst_blk_ptr, blk_doc_ptr, blk_docs,
                        lst_comp_ptr, comp_terms, comp_ckpt, ent_first, ent_blk, blk_bits, ent_code, blk_scale, fwd_ptr,
                        fwd_rows, fwd_impacts, allowed, n_workers):
    """search_approx_raw for many raw queries (CSR rows) over n_workers threads, each with its
    own scratch, queries dealt round-robin: each worker makes its queries canonical itself, so
    a batch pays for no serial preparation before the parallel part.

    Returns (docs, scores, counts, stats): row i holds query i's hits in its first counts[i]
    slots, or counts[i] is canonical_query's refusal; stats sums the work counts over the batch.
    """
    n_queries = q_indptr.shape[0] - 1
    n_docs = fwd_ptr.shape[0] - 1
    longest_list = 0
    for t in range(lst_blk_ptr.shape[0] - 1):
        longest_list = max(longest_list, lst_blk_ptr[t + 1] - lst_blk_ptr[t])
    longest_query = 0
    for q in range(n_queries):
        longest_query = max(longest_query, q_indptr[q + 1] - q_indptr[q])
    out_docs, out_scores, counts = batch_outputs(n_queries, k)
    # a worker's counters on cache lines of their own: the kernel adds to them per block and per
    # document, and two workers' counters on one line would pass it between cores at every add
    worker_stats = np.zeros((n_workers, _STATS_STRIDE), dtype=np.int64)
    for w in nb.prange(n_workers):
        q_terms = np.empty(longest_query, dtype=np.int32)
        q_weights = np.empty(longest_query, dtype=np.float32)
        qdense = np.zeros(lst_blk_ptr.shape[0] - 1, dtype=np.float32)
        visited = np.zeros(n_docs, dtype=np.uint8)
        seen = np.empty(n_docs, dtype=np.int32)
        dots = np.empty(longest_list, dtype=np.float32)
        order = np.empty(longest_list + 2 * longest_query, dtype=np.int64)
        heap_s = np.empty(k, dtype=np.float32)
        heap_d = np.empty(k, dtype=np.int32)
        for q in range(w, n_queries, n_workers):
            lo, hi = q_indptr[q], q_indptr[q + 1]
            counts[q] = search_approx_raw(
                terms[lo:hi], weights[lo:hi], limit, query_cut, heap_factor, k, 1.0, lst_blk_ptr, blk_doc_ptr, blk_docs,
                lst_comp_ptr, comp_terms, comp_ckpt, ent_first, ent_blk, blk_bits, ent_code, blk_scale, fwd_ptr, fwd_rows,
                fwd_impacts, allowed, q_terms, q_weights, qdense, visited, seen, dots, order, heap_s, heap_d, out_docs[q],
                out_scores[q], worker_stats[w],
            )
    return out_docs, out_scores, counts, worker_stats[:, :N_STATS].sum(axis=0)
