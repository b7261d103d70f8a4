"""Numba kernels for approximate search over clustered posting lists with block summaries.

The idea is Seismic's (Bruch, Nardini, Rulli, Venturini, SIGIR 2024): keep each term's heaviest
postings, cluster every kept list into blocks of similar documents, summarize each block by the
per-term maximum of its documents (trimmed to most of its mass, quantized to one byte), and at
query time score a block's documents only when the query's dot product with its summary is close
enough to the current k-th score. Documents are scored exactly, from the forward index, with the
same quantized impacts and the same order of additions as the exhaustive scorer, so a document's
approximate score equals its exact one; only which documents get scored is approximate.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT
from lsr.index.kernels.bsearch import lower_bound
from lsr.index.kernels.topk import batch_outputs, heap_drain, heap_offer

# stats slots filled by search_approx (summed over a batch): what a query's time is spent on
STAT_LISTS, STAT_SUMMARY_ENTRIES, STAT_BLOCKS_SCORED, STAT_BLOCKS_SKIPPED, STAT_DOCS_SCORED, STAT_DOC_ENTRIES = range(6)
N_STATS = 6


@nb.njit(**JIT)
def _summary_dots(t, q_terms, q_weights, lst_comp_ptr, comp_terms, comp_start, lst_ent_ptr, ent_blk, ent_code,
                  blk_scale, b_lo, dots, stats):
    """dots[j] = the query's dot product with block j's summary, for the blocks of term t's list."""
    lo = lst_comp_ptr[t]
    hi = lst_comp_ptr[t + 1]
    base = lst_ent_ptr[t]
    n_list = lst_ent_ptr[t + 1] - base
    n_entries = 0
    for i in range(q_terms.shape[0]):
        qt = q_terms[i]
        a = lower_bound(comp_terms, lo, hi, qt)  # query terms ascend: each search starts where the last ended
        lo = a
        if a < hi and comp_terms[a] == qt:
            w = q_weights[i]
            e_hi = base + (comp_start[a + 1] if a + 1 < hi else n_list)
            for e in range(base + comp_start[a], e_hi):
                dots[ent_blk[e]] += w * np.float32(ent_code[e])
            n_entries += e_hi - base - comp_start[a]
    for j in range(dots.shape[0]):
        dots[j] *= blk_scale[b_lo + j]
    stats[STAT_SUMMARY_ENTRIES] += n_entries


@nb.njit(**JIT)
def search_approx(q_terms, q_weights, query_cut, heap_factor, k, lst_blk_ptr, blk_doc_ptr, blk_docs, lst_comp_ptr,
                  comp_terms, comp_start, lst_ent_ptr, ent_blk, ent_code, blk_scale, fwd_indptr, fwd_terms, fwd_impacts,
                  allowed, qdense, visited, seen, out_docs, out_scores, stats):
    """Approximate top-k of one query; q_terms must ascend.

    Walks the lists of the ``query_cut`` heaviest query terms, heaviest first (the first list's
    blocks best summary first, so the heap fills with good hits early). A block is skipped when
    its summary dot product is below ``heap_factor`` x the current k-th score; the documents of
    the others are scored exactly with the whole query, each once. heap_factor = 0 with every
    term kept and unpruned lists scores every matching document: the exhaustive top-k. With
    ``allowed`` (uint8, one per doc) not empty, other documents are neither scored nor hits.
    qdense (float32, one per term), visited (uint8, one per doc) are zero on entry and on
    return; seen (int32, one per doc) is scratch. Adds work counts into stats.
    """
    for i in range(q_terms.shape[0]):
        qdense[q_terms[i]] = q_weights[i]
    by_weight = np.argsort(-q_weights, kind="mergesort")
    n_cut = min(query_cut, q_terms.shape[0])
    heap_s = np.empty(k, dtype=np.float32)
    heap_d = np.empty(k, dtype=np.int32)
    size = 0
    n_seen = 0
    masked = allowed.shape[0] > 0
    for c in range(n_cut):
        t = q_terms[by_weight[c]]
        b_lo = lst_blk_ptr[t]
        n_blocks = lst_blk_ptr[t + 1] - b_lo
        if n_blocks == 0:
            continue
        stats[STAT_LISTS] += 1
        dots = np.zeros(n_blocks, dtype=np.float32)
        _summary_dots(t, q_terms, q_weights, lst_comp_ptr, comp_terms, comp_start, lst_ent_ptr, ent_blk, ent_code,
                      blk_scale, b_lo, dots, stats)
        order = np.argsort(-dots, kind="mergesort") if c == 0 else np.arange(n_blocks)
        for j in order:
            if size == k and dots[j] < heap_factor * heap_s[0]:
                stats[STAT_BLOCKS_SKIPPED] += 1
                continue
            stats[STAT_BLOCKS_SCORED] += 1
            b = b_lo + j
            for p in range(blk_doc_ptr[b], blk_doc_ptr[b + 1]):
                d = blk_docs[p]
                if visited[d] or (masked and not allowed[d]):
                    continue
                visited[d] = 1
                seen[n_seen] = d
                n_seen += 1
                s = np.float32(0.0)
                lo, hi = fwd_indptr[d], fwd_indptr[d + 1]
                for e in range(lo, hi):  # terms ascend: the exhaustive scorer's order of additions
                    s += qdense[fwd_terms[e]] * np.float32(fwd_impacts[e])
                stats[STAT_DOC_ENTRIES] += hi - lo
                if s > 0.0:
                    size = heap_offer(heap_s, heap_d, size, k, s, d)
    stats[STAT_DOCS_SCORED] += n_seen
    for i in range(n_seen):
        visited[seen[i]] = 0
    for i in range(q_terms.shape[0]):
        qdense[q_terms[i]] = 0.0
    return heap_drain(heap_s, heap_d, size, out_docs, out_scores)


@nb.njit(parallel=True, **JIT)
def search_approx_batch(q_indptr, q_terms, q_weights, query_cut, heap_factor, k, lst_blk_ptr, blk_doc_ptr, blk_docs,
                        lst_comp_ptr, comp_terms, comp_start, lst_ent_ptr, ent_blk, ent_code, blk_scale, fwd_indptr,
                        fwd_terms, fwd_impacts, allowed, n_workers):
    """search_approx for many queries (CSR rows) over n_workers threads.

    Returns (docs, scores, counts, stats): row i holds query i's hits in its first counts[i]
    slots; stats sums the work counts over the batch.
    """
    n_queries = q_indptr.shape[0] - 1
    n_docs = fwd_indptr.shape[0] - 1
    out_docs, out_scores, counts = batch_outputs(n_queries, k)
    worker_stats = np.zeros((n_workers, N_STATS), dtype=np.int64)
    for w in nb.prange(n_workers):
        qdense = np.zeros(lst_blk_ptr.shape[0] - 1, dtype=np.float32)
        visited = np.zeros(n_docs, dtype=np.uint8)
        seen = np.empty(n_docs, dtype=np.int32)
        for q in range(w, n_queries, n_workers):
            lo, hi = q_indptr[q], q_indptr[q + 1]
            counts[q] = search_approx(
                q_terms[lo:hi], q_weights[lo:hi], query_cut, heap_factor, k, lst_blk_ptr, blk_doc_ptr, blk_docs,
                lst_comp_ptr, comp_terms, comp_start, lst_ent_ptr, ent_blk, ent_code, blk_scale, fwd_indptr, fwd_terms,
                fwd_impacts, allowed, qdense, visited, seen, out_docs[q], out_scores[q], worker_stats[w],
            )
    return out_docs, out_scores, counts, worker_stats.sum(axis=0)
