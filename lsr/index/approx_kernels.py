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

from lsr.index.kernels import _JIT, heap_drain, heap_offer

# stats slots filled by search_approx (summed over a batch): what a query's time is spent on
STAT_LISTS, STAT_SUMMARY_ENTRIES, STAT_BLOCKS_SCORED, STAT_BLOCKS_SKIPPED, STAT_DOCS_SCORED, STAT_DOC_ENTRIES = range(6)
N_STATS = 6


# ---- build ------------------------------------------------------------------------------
@nb.njit(**_JIT)
def prune_lists(indptr, docs, weights, threshold, cap):
    """Per term, the postings with weight >= threshold, at most ``cap`` of them (the heaviest,
    ties to the lower doc id). Returns (indptr, docs) of the kept lists, docs ascending."""
    n_terms = indptr.shape[0] - 1
    out_indptr = np.zeros(n_terms + 1, dtype=np.int64)
    out_docs = np.empty(docs.shape[0], dtype=np.int32)
    n = 0
    for t in range(n_terms):
        lo, hi = indptr[t], indptr[t + 1]
        kept = 0
        for j in range(lo, hi):
            if weights[j] >= threshold:
                out_docs[n + kept] = j  # posting position for now
                kept += 1
        if kept > cap:
            pos = out_docs[n : n + kept].copy()
            order = np.argsort(-weights[pos], kind="mergesort")  # stable: ties keep doc order
            pos = np.sort(pos[order[:cap]])
            out_docs[n : n + cap] = pos
            kept = cap
        for j in range(n, n + kept):
            out_docs[j] = docs[out_docs[j]]
        n += kept
        out_indptr[t + 1] = n
    return out_indptr, out_docs[:n].copy()


@nb.njit(**_JIT)
def top_terms(fwd_indptr, fwd_terms, fwd_weights, cut):
    """Each document's ``cut`` heaviest (term, weight) pairs, padded with (-1, 0): the cheap
    document sketch the clustering compares against centroids."""
    n = fwd_indptr.shape[0] - 1
    out_t = np.full((n, cut), -1, dtype=np.int32)
    out_w = np.zeros((n, cut), dtype=np.float32)
    for d in range(n):
        lo, hi = fwd_indptr[d], fwd_indptr[d + 1]
        order = np.argsort(-fwd_weights[lo:hi], kind="mergesort")
        for i in range(min(cut, hi - lo)):
            out_t[d, i] = fwd_terms[lo + order[i]]
            out_w[d, i] = fwd_weights[lo + order[i]]
    return out_t, out_w


@nb.njit(**_JIT)
def cluster_list(list_docs, n_centroids, seed, fwd_indptr, fwd_terms, fwd_weights, top_t, top_w, slot):
    """Group one posting list into blocks of similar documents.

    ``n_centroids`` documents sampled from the list (seeded) are the centroids; every document
    joins the centroid with the largest dot product between its sketch (its heaviest terms) and
    the centroid's full vector, computed through a small inverted index over the centroids.
    slot (int32, one per vocabulary term) is scratch holding -1, left so on return.
    Returns the documents grouped by block (each block ascending) and the non-empty block sizes.
    """
    n = list_docs.shape[0]
    np.random.seed(seed)
    perm = np.arange(n)
    for i in range(n_centroids):  # partial Fisher-Yates: the first n_centroids are the sample
        j = i + np.random.randint(n - i)
        perm[i], perm[j] = perm[j], perm[i]
    cents = np.sort(list_docs[perm[:n_centroids]])
    # inverted index over the centroids (term -> centroid, weight), terms numbered by first sight
    n_entries = 0
    for c in range(n_centroids):
        n_entries += fwd_indptr[cents[c] + 1] - fwd_indptr[cents[c]]
    touched = np.empty(n_entries, dtype=np.int32)
    ptr = np.zeros(n_entries + 1, dtype=np.int64)
    n_touched = 0
    for c in range(n_centroids):
        for j in range(fwd_indptr[cents[c]], fwd_indptr[cents[c] + 1]):
            t = fwd_terms[j]
            if slot[t] < 0:
                slot[t] = n_touched
                touched[n_touched] = t
                n_touched += 1
            ptr[slot[t] + 1] += 1
    for i in range(n_touched):
        ptr[i + 1] += ptr[i]
    fill = ptr[:n_touched].copy()
    e_cent = np.empty(n_entries, dtype=np.int32)
    e_w = np.empty(n_entries, dtype=np.float32)
    for c in range(n_centroids):
        for j in range(fwd_indptr[cents[c]], fwd_indptr[cents[c] + 1]):
            s = slot[fwd_terms[j]]
            e_cent[fill[s]] = c
            e_w[fill[s]] = fwd_weights[j]
            fill[s] += 1
    assign = np.empty(n, dtype=np.int64)
    dots = np.zeros(n_centroids, dtype=np.float32)
    for p in range(n):
        d = list_docs[p]
        for a in range(top_t.shape[1]):
            t = top_t[d, a]
            if t < 0:
                break
            s = slot[t]
            if s >= 0:
                w = top_w[d, a]
                for e in range(ptr[s], ptr[s + 1]):
                    dots[e_cent[e]] += w * e_w[e]
        best = 0
        for c in range(1, n_centroids):
            if dots[c] > dots[best]:
                best = c
        assign[p] = best
        dots[:] = 0.0
    for i in range(n_touched):
        slot[touched[i]] = -1
    # counting sort of the documents by centroid (stable: each block stays ascending)
    sizes = np.zeros(n_centroids + 1, dtype=np.int64)
    for p in range(n):
        sizes[assign[p] + 1] += 1
    starts = np.cumsum(sizes)
    out = np.empty(n, dtype=np.int32)
    for p in range(n):
        c = assign[p]
        out[starts[c]] = list_docs[p]
        starts[c] += 1
    block_sizes = sizes[1:]
    return out, block_sizes[block_sizes > 0]


@nb.njit(**_JIT)
def summarize_list(grouped, block_sizes, energy, fwd_indptr, fwd_terms, fwd_impacts, maxv):
    """One list's block summaries, laid out as a small inverted index for fast dot products.

    A block's summary is the per-term maximum impact over its documents, trimmed to the
    heaviest terms holding ``energy`` of its total (the crossing term included), quantized to
    one byte per value with a per-block scale; codes round up, so a kept value is never
    under-estimated. maxv (float32, one per vocabulary term) is zeroed scratch, left zeroed.
    Returns (terms ascending, per-term entry counts, entry blocks, entry codes, block scales).
    """
    n_blocks = block_sizes.shape[0]
    bound = 0
    for p in range(grouped.shape[0]):
        bound += fwd_indptr[grouped[p] + 1] - fwd_indptr[grouped[p]]
    e_term = np.empty(bound, dtype=np.int32)
    e_blk = np.empty(bound, dtype=np.int32)
    e_code = np.empty(bound, dtype=np.uint8)
    scales = np.empty(n_blocks, dtype=np.float32)
    touched = np.empty(bound, dtype=np.int32)
    n = 0
    p = 0
    for b in range(n_blocks):
        n_touched = 0
        for _ in range(block_sizes[b]):
            d = grouped[p]
            p += 1
            for j in range(fwd_indptr[d], fwd_indptr[d + 1]):
                t = fwd_terms[j]
                v = np.float32(fwd_impacts[j])
                if maxv[t] == 0.0 and v > 0.0:
                    touched[n_touched] = t
                    n_touched += 1
                if v > maxv[t]:
                    maxv[t] = v
        terms = touched[:n_touched]
        vals = np.empty(n_touched, dtype=np.float32)
        total = 0.0
        for i in range(n_touched):
            vals[i] = maxv[terms[i]]
            maxv[terms[i]] = 0.0
            total += vals[i]
        order = np.argsort(-vals, kind="mergesort")
        until = energy * total
        acc = 0.0
        kept = 0
        while kept < n_touched:
            acc += vals[order[kept]]
            kept += 1
            if acc >= until:
                break
        top = vals[order[0]] if n_touched else np.float32(1.0)
        scale = top / np.float32(255.0)
        scales[b] = scale
        for i in range(kept):
            e_term[n] = terms[order[i]]
            e_blk[n] = b
            e_code[n] = min(255, max(1, int(np.ceil(vals[order[i]] / scale))))
            n += 1
    # regroup the entries by term (stable: blocks stay ascending within a term)
    order = np.argsort(e_term[:n], kind="mergesort")
    terms_sorted = e_term[:n][order]
    n_terms = 0
    for i in range(n):
        if i == 0 or terms_sorted[i] != terms_sorted[i - 1]:
            n_terms += 1
    comps = np.empty(n_terms, dtype=np.int32)
    counts = np.zeros(n_terms, dtype=np.int64)
    c = -1
    for i in range(n):
        if i == 0 or terms_sorted[i] != terms_sorted[i - 1]:
            c += 1
            comps[c] = terms_sorted[i]
        counts[c] += 1
    return comps, counts, e_blk[:n][order], e_code[:n][order], scales


# ---- search -----------------------------------------------------------------------------
@nb.njit(**_JIT)
def _summary_dots(t, q_terms, q_weights, lst_comp_ptr, comp_terms, comp_ptr, ent_blk, ent_code, blk_scale,
                  b_lo, dots, stats):
    """dots[j] = the query's dot product with block j's summary, for the blocks of term t's list."""
    lo = lst_comp_ptr[t]
    hi = lst_comp_ptr[t + 1]
    n_entries = 0
    for i in range(q_terms.shape[0]):
        qt = q_terms[i]
        a, z = lo, hi  # query terms ascend, so each search starts where the last one ended
        while a < z:
            m = (a + z) >> 1
            if comp_terms[m] < qt:
                a = m + 1
            else:
                z = m
        lo = a
        if a < hi and comp_terms[a] == qt:
            w = q_weights[i]
            for e in range(comp_ptr[a], comp_ptr[a + 1]):
                dots[ent_blk[e]] += w * np.float32(ent_code[e])
            n_entries += comp_ptr[a + 1] - comp_ptr[a]
    for j in range(dots.shape[0]):
        dots[j] *= blk_scale[b_lo + j]
    stats[STAT_SUMMARY_ENTRIES] += n_entries


@nb.njit(**_JIT)
def search_approx(q_terms, q_weights, query_cut, heap_factor, k, lst_blk_ptr, blk_doc_ptr, blk_docs, lst_comp_ptr,
                  comp_terms, comp_ptr, ent_blk, ent_code, blk_scale, fwd_indptr, fwd_terms, fwd_impacts,
                  qdense, visited, seen, out_docs, out_scores, stats):
    """Approximate top-k of one query; q_terms must ascend.

    Walks the lists of the ``query_cut`` heaviest query terms, heaviest first (the first list's
    blocks best summary first, so the heap fills with good hits early). A block is skipped when
    its summary dot product is below ``heap_factor`` x the current k-th score; the documents of
    the others are scored exactly with the whole query, each once. heap_factor = 0 with every
    term kept and unpruned lists scores every matching document: the exhaustive top-k.
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
    for c in range(n_cut):
        t = q_terms[by_weight[c]]
        b_lo = lst_blk_ptr[t]
        n_blocks = lst_blk_ptr[t + 1] - b_lo
        if n_blocks == 0:
            continue
        stats[STAT_LISTS] += 1
        dots = np.zeros(n_blocks, dtype=np.float32)
        _summary_dots(t, q_terms, q_weights, lst_comp_ptr, comp_terms, comp_ptr, ent_blk, ent_code, blk_scale,
                      b_lo, dots, stats)
        order = np.argsort(-dots, kind="mergesort") if c == 0 else np.arange(n_blocks)
        for j in order:
            if size == k and dots[j] < heap_factor * heap_s[0]:
                stats[STAT_BLOCKS_SKIPPED] += 1
                continue
            stats[STAT_BLOCKS_SCORED] += 1
            b = b_lo + j
            for p in range(blk_doc_ptr[b], blk_doc_ptr[b + 1]):
                d = blk_docs[p]
                if visited[d]:
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


@nb.njit(parallel=True, **_JIT)
def search_approx_batch(q_indptr, q_terms, q_weights, query_cut, heap_factor, k, lst_blk_ptr, blk_doc_ptr, blk_docs,
                        lst_comp_ptr, comp_terms, comp_ptr, ent_blk, ent_code, blk_scale, fwd_indptr, fwd_terms,
                        fwd_impacts, n_workers):
    """search_approx for many queries (CSR rows) over n_workers threads.

    Returns (docs, scores, counts, stats): row i holds query i's hits in its first counts[i]
    slots; stats sums the work counts over the batch.
    """
    n_queries = q_indptr.shape[0] - 1
    n_docs = fwd_indptr.shape[0] - 1
    out_docs = np.full((n_queries, k), -1, dtype=np.int32)
    out_scores = np.zeros((n_queries, k), dtype=np.float32)
    counts = np.zeros(n_queries, dtype=np.int64)
    worker_stats = np.zeros((n_workers, N_STATS), dtype=np.int64)
    for w in nb.prange(n_workers):
        qdense = np.zeros(lst_blk_ptr.shape[0] - 1, dtype=np.float32)
        visited = np.zeros(n_docs, dtype=np.uint8)
        seen = np.empty(n_docs, dtype=np.int32)
        for q in range(w, n_queries, n_workers):
            lo, hi = q_indptr[q], q_indptr[q + 1]
            counts[q] = search_approx(
                q_terms[lo:hi], q_weights[lo:hi], query_cut, heap_factor, k, lst_blk_ptr, blk_doc_ptr, blk_docs,
                lst_comp_ptr, comp_terms, comp_ptr, ent_blk, ent_code, blk_scale, fwd_indptr, fwd_terms, fwd_impacts,
                qdense, visited, seen, out_docs[q], out_scores[q], worker_stats[w],
            )
    return out_docs, out_scores, counts, worker_stats.sum(axis=0)
