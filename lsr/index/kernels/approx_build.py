"""Building the approximate-search structure: static pruning, list clustering, block summaries.

The idea is Seismic's (Bruch, Nardini, Rulli, Venturini, SIGIR 2024); see
:mod:`lsr.index.kernels.approx_search` for how the structure is searched.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT
from lsr.index.kernels.prefetch import prefetch_range

@nb.njit(**JIT)
def kth_smallest(weights, k):
    """The k-th smallest (0-based) of weights (float32, >= 0), as np.partition(weights, k)[k]
    gives it, without its copy of the array: a radix select on the bit patterns (which order
    like the values for non-negative floats; -0.0 counts as 0.0), by their high then their low
    16 bits."""
    bits = weights.view(np.uint32)
    hist = np.zeros(65536, dtype=np.int64)
    for i in range(bits.shape[0]):
        hist[(bits[i] & 0x7FFFFFFF) >> 16] += 1
    high, k = _bucket(hist, k)
    hist[:] = 0
    for i in range(bits.shape[0]):
        b = bits[i] & 0x7FFFFFFF
        if b >> 16 == high:
            hist[b & 0xFFFF] += 1
    low, _ = _bucket(hist, k)
    return np.array([(high << 16) | low], dtype=np.uint32).view(np.float32)[0]


@nb.njit(inline="always", **JIT)
def _bucket(hist, k):
    """The bucket holding the k-th smallest counted value, and k's rank within it."""
    b = 0
    while k >= hist[b]:
        k -= hist[b]
        b += 1
    return b, k


@nb.njit(**JIT)
def prune_counts(indptr, weights, threshold, cap, t_lo, t_hi, counts):
    """counts[t] for t_lo <= t < t_hi: how many postings of list t static pruning keeps, those
    with weight >= threshold, at most ``cap``."""
    for t in range(t_lo, t_hi):
        kept = 0
        for j in range(indptr[t], indptr[t + 1]):
            kept += weights[j] >= threshold
        counts[t] = min(kept, cap)


@nb.njit(**JIT)
def prune_fill(indptr, docs, weights, threshold, out_indptr, t_lo, t_hi, out_docs):
    """The kept postings' docs (ascending) of lists t_lo <= t < t_hi into out_docs at out_indptr
    (offsets of prune_counts): those with weight >= threshold, and of a list keeping more than
    its room, the heaviest, ties to the lower doc id."""
    for t in range(t_lo, t_hi):
        lo, hi = indptr[t], indptr[t + 1]
        n, room = out_indptr[t], out_indptr[t + 1] - out_indptr[t]
        kept = 0
        for j in range(lo, hi):
            kept += weights[j] >= threshold
        if kept <= room:
            for j in range(lo, hi):
                if weights[j] >= threshold:
                    out_docs[n] = docs[j]
                    n += 1
            continue
        pos = np.empty(kept, dtype=np.int64)
        kept = 0
        for j in range(lo, hi):
            if weights[j] >= threshold:
                pos[kept] = j
                kept += 1
        order = np.argsort(-weights[pos], kind="mergesort")  # stable: ties keep doc order
        pos = np.sort(pos[order[:room]])
        for i in range(room):
            out_docs[n + i] = docs[pos[i]]


@nb.njit(**JIT)
def top_terms(fwd_indptr, fwd_terms, fwd_weights, d_lo, d_hi, out_t, out_w):
    """Rows d_lo <= d < d_hi of out_t, out_w (cut columns): each document's ``cut`` heaviest
    (term, weight) pairs, padded with (-1, 0), the cheap document sketch the clustering compares
    against centroids."""
    cut = out_t.shape[1]
    for d in range(d_lo, d_hi):  # insertion into the kept few, heaviest first, ties in row order (no sort)
        out_t[d, :] = -1
        out_w[d, :] = 0.0
        size = 0
        for e in range(fwd_indptr[d], fwd_indptr[d + 1]):
            w = fwd_weights[e]
            if size == cut and not w > out_w[d, cut - 1]:
                continue
            i = min(size, cut - 1)
            while i > 0 and w > out_w[d, i - 1]:
                out_t[d, i], out_w[d, i] = out_t[d, i - 1], out_w[d, i - 1]
                i -= 1
            out_t[d, i], out_w[d, i] = fwd_terms[e], w
            size = min(size + 1, cut)


@nb.njit(**JIT)
def cluster_list(list_docs, n_centroids, seed, top_t, top_w, fwd_indptr, fwd_terms, fwd_weights, slot):
    """Group one posting list into blocks of similar documents.

    ``n_centroids`` documents sampled from the list (seeded) are the centroids; every document
    joins the centroid with the largest dot product between its sketch (heaviest terms) and the
    centroid's whole vector, computed through a small inverted index over the centroids. The
    sketch keeps this linear in the list's length times the sketch size; sketching the
    centroids too lost recall (0.951 against 0.959 at the same knobs on the real set).
    slot (int32, one per vocabulary term) is scratch holding -1, left so on return.
    Returns the documents grouped by block (each block ascending) and the non-empty block sizes.
    """
    n = list_docs.shape[0]
    cut = top_t.shape[1]
    np.random.seed(seed)
    perm = np.arange(n)
    for i in range(n_centroids):  # partial Fisher-Yates: the first n_centroids are the sample
        j = i + np.random.randint(n - i)
        perm[i], perm[j] = perm[j], perm[i]
    cents = np.sort(list_docs[perm[:n_centroids]])
    # inverted index over the centroids' whole vectors (term -> centroid, weight), terms
    # numbered by first sight
    n_entries = 0
    for c in range(n_centroids):
        n_entries += fwd_indptr[cents[c] + 1] - fwd_indptr[cents[c]]
    touched = np.empty(n_entries, dtype=np.int32)
    ptr = np.zeros(n_entries + 1, dtype=np.int64)
    n_touched = 0
    for c in range(n_centroids):  # zero weights left out: every product added below is > 0
        for e in range(fwd_indptr[cents[c]], fwd_indptr[cents[c] + 1]):
            t = fwd_terms[e]
            if not fwd_weights[e] > 0:
                continue
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
        for e in range(fwd_indptr[cents[c]], fwd_indptr[cents[c] + 1]):
            if not fwd_weights[e] > 0:
                continue
            s = slot[fwd_terms[e]]
            e_cent[fill[s]] = c
            e_w[fill[s]] = fwd_weights[e]
            fill[s] += 1
    assign = np.empty(n, dtype=np.int64)
    dots = np.zeros(n_centroids, dtype=np.float32)
    hit = np.empty(n_centroids + 1, dtype=np.int32)  # centroids sharing a term with the doc (+1: the branch-free store below writes one past the last)
    for p in range(n):
        d = list_docs[p]
        n_hit = 0
        for a in range(cut):
            t = top_t[d, a]
            w = top_w[d, a]
            if t < 0 or not w > 0:  # the sketch is heaviest first: the rest is padding or zeros
                break
            s = slot[t]
            if s >= 0:
                for e in range(ptr[s], ptr[s + 1]):  # branch-free: a centroid's first hit is a coin toss
                    c = e_cent[e]
                    hit[n_hit] = c
                    n_hit += dots[c] == 0.0
                    dots[c] += w * e_w[e]
        best = 0  # a document sharing no sketch term with any centroid joins the first
        best_dot = np.float32(0.0)
        for i in range(n_hit):
            c = hit[i]
            if dots[c] > best_dot or (dots[c] == best_dot and c < best):
                best, best_dot = c, dots[c]
            dots[c] = 0.0
        assign[p] = best
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


@nb.njit(**JIT)
def summarize_list(grouped, block_sizes, energy, fwd_indptr, fwd_terms, fwd_impacts, maxv, slot):
    """One list's block summaries, laid out as a small inverted index for fast dot products.

    A block's summary is the per-term maximum impact over its documents, trimmed to the
    heaviest terms holding ``energy`` of its total (the crossing term included), quantized to
    one byte per value with a per-block scale; codes round up, so a kept value is never
    under-estimated. maxv (of the impacts' dtype, zeros) and slot (int32, -1) hold one entry per
    vocabulary term: scratch, left as found.
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
    codes = np.empty(bound, dtype=np.int64)
    mass = np.zeros(256, dtype=np.float64)
    n = 0
    p = 0
    for b in range(n_blocks):
        n_touched = 0
        if b + 1 < n_blocks:  # the next block's rows are fetched while this one is read
            for q in range(p + block_sizes[b], p + block_sizes[b] + block_sizes[b + 1]):
                d = grouped[q]
                prefetch_range(fwd_terms, fwd_indptr[d], fwd_indptr[d + 1])
                prefetch_range(fwd_impacts, fwd_indptr[d], fwd_indptr[d + 1])
        for _ in range(block_sizes[b]):
            d = grouped[p]
            p += 1
            for j in range(fwd_indptr[d], fwd_indptr[d + 1]):  # branch-free: the max is a coin toss
                t = fwd_terms[j]
                v = fwd_impacts[j]
                m = maxv[t]
                touched[n_touched] = t
                n_touched += (m == 0) & (v > 0)
                maxv[t] = max(m, v)
        # trim by energy without sorting: bin the values by their one-byte code, find the code
        # where the mass from the top crosses energy x total, keep everything above it and the
        # terms of that code (in term order) until the mass is reached
        top = 0
        total = 0.0
        for i in range(n_touched):
            v = maxv[touched[i]]
            total += np.float32(v)
            top = max(top, v)
        scale = np.float32(top) / np.float32(255.0) if top > 0 else np.float32(1.0)
        scales[b] = scale
        mass.fill(0.0)
        for i in range(n_touched):
            v = maxv[touched[i]]
            codes[i] = min(255, max(1, int(np.ceil(np.float32(v) / scale))))  # rounded up: never under
            mass[codes[i]] += np.float32(v)
        until = energy * total
        acc = 0.0
        cut = 255
        while cut > 1 and acc + mass[cut] < until:
            acc += mass[cut]
            cut -= 1
        for i in range(n_touched):  # branch-free too: about half the terms are kept
            t = touched[i]
            c = codes[i]
            at_cut = c == cut
            keep = (c > cut) | (at_cut & (acc < until))
            acc += np.float32(maxv[t]) if keep & at_cut else 0.0
            e_term[n] = t
            e_blk[n] = b
            e_code[n] = c
            n += keep
            maxv[t] = 0
    # regroup the entries by term, terms ascending, blocks ascending within a term (counting sort)
    n_terms = 0
    for i in range(n):
        if slot[e_term[i]] < 0:
            slot[e_term[i]] = 0
            touched[n_terms] = e_term[i]
            n_terms += 1
    comps = np.sort(touched[:n_terms])
    counts = np.zeros(n_terms, dtype=np.int64)
    for r in range(n_terms):
        slot[comps[r]] = r
    for i in range(n):
        counts[slot[e_term[i]]] += 1
    fill = np.zeros(n_terms, dtype=np.int64)
    for r in range(1, n_terms):
        fill[r] = fill[r - 1] + counts[r - 1]
    out_blk = np.empty(n, dtype=np.int32)
    out_code = np.empty(n, dtype=np.uint8)
    for i in range(n):
        r = slot[e_term[i]]
        out_blk[fill[r]] = e_blk[i]
        out_code[fill[r]] = e_code[i]
        fill[r] += 1
    for r in range(n_terms):
        slot[comps[r]] = -1
    return comps, counts, out_blk, out_code, scales


@nb.njit(**JIT)
def cluster_and_summarize(l_indptr, l_docs, t_lo, t_hi, centroid_fraction, seed, energy, top_t, top_w, fwd_indptr,
                          fwd_terms, fwd_weights, fwd_impacts, vocab_size, term_like, block_like):
    """cluster_list then summarize_list for the kept lists t_lo <= t < t_hi of (l_indptr, l_docs),
    in one call: a Python loop paid two dispatches and seven appends a list (0.5 s of a 19k-list
    build). Ranges of lists are independent (the build runs several on its threads). List t has
    max(1, centroid_fraction x its length) centroids, sampled with seed x 1,000,003 + t, so the
    result does not depend on how the lists are split into ranges.

    Returns, lists in term order: their documents grouped by block, block sizes, block scales,
    blocks and summary terms per list, summary terms (term_like's dtype), their entry counts
    (uint32), entry blocks (block_like's dtype: the caller picks them narrow, since the build's
    fresh memory costs more than its arithmetic), entry codes, then how many blocks, summary
    terms and entries there are: the per-block, per-term and per-entry arrays are longer than
    that (the caller joins the ranges' parts, which copies them anyway).
    """
    slot = np.full(vocab_size, -1, dtype=np.int32)
    maxv = np.zeros(vocab_size, dtype=fwd_impacts.dtype)
    lst_blocks = np.zeros(t_hi - t_lo, dtype=np.int64)
    lst_comps = np.zeros(t_hi - t_lo, dtype=np.int64)
    most_blocks = 0
    for t in range(t_lo, t_hi):
        if l_indptr[t + 1] > l_indptr[t]:
            most_blocks += max(1, int(centroid_fraction * (l_indptr[t + 1] - l_indptr[t])))
    base = l_indptr[t_lo]
    docs = np.empty(l_indptr[t_hi] - base, dtype=np.int32)
    sizes = np.empty(most_blocks, dtype=np.int64)
    scales = np.empty(most_blocks, dtype=np.float32)
    comps = np.empty(1024, dtype=term_like.dtype)
    counts = np.empty(1024, dtype=np.uint32)
    ent_blk = np.empty(1024, dtype=block_like.dtype)
    ent_code = np.empty(1024, dtype=np.uint8)
    n_blk = n_comp = n_ent = 0
    for t in range(t_lo, t_hi):
        lo, hi = l_indptr[t], l_indptr[t + 1]
        if lo == hi:
            continue
        grouped, bs = cluster_list(l_docs[lo:hi], max(1, int(centroid_fraction * (hi - lo))), seed * 1_000_003 + t, top_t,
                                   top_w, fwd_indptr, fwd_terms, fwd_weights, slot)
        c, cc, eb, ec, sc = summarize_list(grouped, bs, energy, fwd_indptr, fwd_terms, fwd_impacts, maxv, slot)
        docs[lo - base:hi - base] = grouped
        sizes[n_blk:n_blk + bs.shape[0]] = bs
        scales[n_blk:n_blk + bs.shape[0]] = sc
        n_blk += bs.shape[0]
        comps, counts = _room(comps, n_comp + c.shape[0]), _room(counts, n_comp + c.shape[0])
        comps[n_comp:n_comp + c.shape[0]] = c
        counts[n_comp:n_comp + c.shape[0]] = cc
        n_comp += c.shape[0]
        ent_blk, ent_code = _room(ent_blk, n_ent + eb.shape[0]), _room(ent_code, n_ent + eb.shape[0])
        ent_blk[n_ent:n_ent + eb.shape[0]] = eb
        ent_code[n_ent:n_ent + eb.shape[0]] = ec
        n_ent += eb.shape[0]
        lst_blocks[t - t_lo], lst_comps[t - t_lo] = bs.shape[0], c.shape[0]
    return docs, sizes, scales, lst_blocks, lst_comps, comps, counts, ent_blk, ent_code, n_blk, n_comp, n_ent


@nb.njit(**JIT)
def summary_runs(counts, n_entries, checkpoint, ckpt, words):
    """The start bits (into words: zeros, n_entries + 1 bits and a padding word) of runs of
    ``counts`` entries each, plus the end's bit, and every ``checkpoint``-th run's first entry
    (into ckpt): what approximate search finds a summary term's entries by."""
    e = 0
    for i in range(counts.shape[0]):
        if i % checkpoint == 0:
            ckpt[i // checkpoint] = e
        words[e >> 6] |= np.uint64(1) << np.uint64(e & 63)
        e += counts[i]
    words[n_entries >> 6] |= np.uint64(1) << np.uint64(n_entries & 63)


@nb.njit(**JIT)
def _room(a, n):
    """a, or a copy at least twice as long when it holds fewer than n values."""
    if n <= a.shape[0]:
        return a
    out = np.empty(max(n, 2 * a.shape[0]), dtype=a.dtype)
    out[:a.shape[0]] = a
    return out
