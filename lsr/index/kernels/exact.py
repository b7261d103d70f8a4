"""Exact search of one query by a chosen strategy, and the per-query planner that chooses it.

Strategies (codes shared with :mod:`lsr.index.planner`): exhaustive term-at-a-time scoring,
block-max pruning, and superblock pruning. Every one returns the float top-k (ties by doc id);
they differ only in the work done, which depends on the query: long queries over flat weights
touch most blocks and are cheapest scored exhaustively, short skewed ones (BM25) prune well.
The index arrays travel as tuples in a fixed order: ``post`` (indptr, docs, impacts, weights),
``fwd`` (indptr, terms, weights), ``blk`` (:meth:`BlockMax.kernel_args`), ``sup``
(:meth:`BlockMax.superblock_args`).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT
from lsr.index.kernels.blockmax_search import search_bmp
from lsr.index.kernels.exhaustive import search_exhaustive
from lsr.index.kernels.query import canonical_query
from lsr.index.kernels.superblock_search import search_superblocks

EXHAUSTIVE, BLOCKMAX, SUPERBLOCK, AUTO = 0, 1, 2, 3


# Planner costs, in postings accumulated exhaustively (the unit): exhaustive search reads each
# posting and passes once more over the documents it touched; a pruned search pays a binary
# search per query term in each block it scores (~log2 of the block's terms) plus its postings.
EXHAUSTIVE_PER_POSTING = 2.0
SEARCH_STEP = 3.0
BLOCK_OVERHEAD = 10.0
# A query is scored exhaustively without a probe when its superblock bounds alone cost
# BOUNDS_SHARE of an exhaustive search, or scoring PROBE_SHARE of the blocks would.
BOUNDS_SHARE = 0.5
PROBE_SHARE = 0.25
# The planner's record. A failed probe costs its bounds and a superblock of blocks for nothing,
# and over flat learned weights nearly all fail (splade-gcide, k = 10: 30% of the queries
# probed, 45-230 us each, against 660 us exhaustive; none won). So an index counts, per k (by
# powers of two), its probes and their wins; past PROBE_WARMUP probes a query may probe only
# while at least one probe in PROBE_MIN_WIN won, or as every EXPLORE-th such query (workloads
# change). Halving the counts at PROBE_WINDOW probes keeps the record recent. A win saves most
# of an exhaustive search, a failure wastes a fraction, so a 1-in-8 win rate still pays.
# Threads of a batch update the record without locks: a lost count delays a verdict, and no
# answer depends on it.
PROBE_WARMUP = 16
PROBE_MIN_WIN = 8
EXPLORE = 16
PROBE_WINDOW = 256
K_BUCKETS = 32
ELIGIBLE, PROBES, WINS = 0, 1, 2


def new_record() -> np.ndarray:
    """An empty planner record (one row per k bucket: eligible queries, probes, wins)."""
    return np.zeros((K_BUCKETS, 3), dtype=np.int64)


@nb.njit(inline="always", **JIT)
def k_bucket(k):
    """The record's row of ``k``: floor(log2 k)."""
    b = 0
    while k > 1:
        k >>= 1
        b += 1
    return b


@nb.njit(inline="always", **JIT)
def _may_probe(record, b):
    """Whether a query that the static rules let probe may, given row ``b`` of the record
    (which counts it as eligible)."""
    record[b, ELIGIBLE] += 1
    probes = record[b, PROBES]
    return probes < PROBE_WARMUP or record[b, WINS] * PROBE_MIN_WIN >= probes or record[b, ELIGIBLE] % EXPLORE == 0


@nb.njit(inline="always", **JIT)
def _record_probe(record, b, won):
    record[b, PROBES] += 1
    record[b, WINS] += won
    if record[b, PROBES] >= PROBE_WINDOW:
        record[b, PROBES] //= 2
        record[b, WINS] //= 2


@nb.njit(**JIT)
def _plan_costs(q_terms, p_indptr, blk_indptr, blk_n_terms):
    """(exhaustive cost, cost per scored block) of one query."""
    postings = 0
    for i in range(q_terms.shape[0]):
        postings += p_indptr[q_terms[i] + 1] - p_indptr[q_terms[i]]
    n_blocks = blk_indptr.shape[0] - 1
    exhaustive = EXHAUSTIVE_PER_POSTING * postings
    per_block = SEARCH_STEP * q_terms.shape[0] * np.log2(2.0 + blk_n_terms) + postings / max(1, n_blocks) + BLOCK_OVERHEAD
    return exhaustive, per_block


@nb.njit(**JIT)
def _bounds_cost(q_terms, sb_indptr):
    """The superblock-bound cost of one query: its terms' superblock entries. Asked only when
    a probe is not hopeless: it reads a pointer per term that exhaustive search never needs."""
    entries = 0
    for i in range(q_terms.shape[0]):
        entries += sb_indptr[q_terms[i] + 1] - sb_indptr[q_terms[i]]
    return float(entries)


@nb.njit(**JIT)
def search_one(strategy, q_terms, q_weights, k, alpha, err_units, allowed, post, fwd, blk, sup, record, acc, touched,
               found, ub, sbub, qdense, out_docs, out_scores, used):
    """Top-k of one query by ``strategy`` (q_terms ascending), or by the planner's choice for
    AUTO; ``used[0]`` gets the strategy that produced the hits. ``record``: the index's
    planner record (:func:`new_record`). Scratch as the strategies' kernels take it (acc,
    touched, found: one per doc; ub: one per block; sbub: one per superblock; qdense: float32,
    one per term).

    The planner: exhaustive search costs its postings; superblock search costs its bounds, then
    the blocks it must score, which depend on how fast the k-th score rises. So a query whose
    superblock bounds alone are a large share of the exhaustive cost goes exhaustive; any other
    starts superblock search as a probe that gives up (having scored a few blocks) as soon as
    the blocks left above the floor would cost more than the exhaustive search. No probe
    starts for a k that one superblock's documents cannot fill, nor, by the record, for a k
    whose recent probes have nearly all failed.
    """
    budget, per_block, bucket = -1.0, 0.0, -1
    if strategy == AUTO:
        exhaustive, per_block = _plan_costs(q_terms, post[0], blk[6], blk_terms_per_block(blk))
        strategy = EXHAUSTIVE
        # a probe is hopeless when pruning even most blocks would not pay, or when the best
        # superblock cannot hold k documents: its verdict needs the k-th score, and until the
        # heap is full it scores superblocks blind (k = 1000 on splade-gcide: 233 us a probe)
        if PROBE_SHARE * (blk[6].shape[0] - 1) * per_block <= exhaustive and k <= sup[0] * blk[0]:
            bounds = _bounds_cost(q_terms, sup[1])
            if bounds <= BOUNDS_SHARE * exhaustive:
                bucket = k_bucket(k)
                if _may_probe(record, bucket):
                    strategy, budget = SUPERBLOCK, exhaustive - bounds
    if strategy == SUPERBLOCK:
        n = search_superblocks(q_terms, q_weights, blk[0], blk[1], blk[2], blk[3], blk[4], blk[5], blk[6], blk[7], blk[8],
                               blk[9], blk[10], sup[0], sup[1], sup[2], sup[3], sup[4], k, alpha, err_units, allowed,
                               fwd[0], fwd[1], fwd[2], sbub, qdense, out_docs, out_scores, budget, per_block)
        if budget >= 0.0:
            _record_probe(record, bucket, n >= 0)
        if n >= 0:
            used[0] = SUPERBLOCK
            return n
        strategy = EXHAUSTIVE  # the probe found exhaustive search cheaper
    used[0] = strategy
    if strategy == EXHAUSTIVE:
        return search_exhaustive(q_terms, q_weights, post[0], post[1], post[3], k, allowed, acc, touched, found, out_docs,
                                 out_scores)
    return search_bmp(q_terms, q_weights, blk[0], blk[1], blk[2], blk[3], blk[4], blk[5], blk[6], blk[7], blk[8], blk[9],
                      blk[10], k, alpha, err_units, allowed, fwd[0], fwd[1], fwd[2], ub, qdense, out_docs, out_scores)


@nb.njit(**JIT)
def search_one_raw(strategy, terms, weights, limit, k, alpha, err_units, allowed, post, fwd, blk, sup, record, keys,
                   q_terms, q_weights, acc, touched, found, ub, sbub, qdense, out_docs, out_scores, used):
    """canonical_query then search_one: a raw query (terms in any order, repeats, weights <= 0)
    in one call; keys, q_terms, q_weights hold at least len(terms) slots. Returns the hit
    count, or canonical_query's refusal."""
    n_q = canonical_query(terms, weights, post[0].shape[0] - 1, limit, keys, q_terms, q_weights)
    if n_q < 0:
        return n_q
    return search_one(strategy, q_terms[:n_q], q_weights[:n_q], k, alpha, err_units, allowed, post, fwd, blk, sup, record,
                      acc, touched, found, ub, sbub, qdense, out_docs, out_scores, used)


@nb.njit(inline="always", **JIT)
def blk_terms_per_block(blk):
    """Mean distinct terms per block: what a binary search in a block costs (log2 of it)."""
    return blk[7].shape[0] / max(1, blk[6].shape[0] - 1)


@nb.njit(parallel=True, **JIT)
def search_batch(strategies, q_indptr, q_terms, q_weights, k, alpha, err_units, allowed, post, fwd, blk, sup, record,
                 n_workers):
    """search_one for many queries (CSR rows, one strategy each, replaced by the one used) over
    n_workers threads. Returns (docs, scores float64, counts): row i holds query i's hits in its
    first counts[i] slots."""
    n_queries = q_indptr.shape[0] - 1
    n_docs = fwd[0].shape[0] - 1
    out_docs = np.full((n_queries, k), -1, dtype=np.int32)
    out_scores = np.zeros((n_queries, k), dtype=np.float64)
    counts = np.zeros(n_queries, dtype=np.int64)
    for w in nb.prange(n_workers):
        acc = np.zeros(n_docs, dtype=np.float64)
        touched = np.empty(n_docs, dtype=np.int32)
        found = np.empty(n_docs, dtype=np.float64)
        ub = np.zeros(blk[6].shape[0] - 1, dtype=np.float32)
        sbub = np.zeros(-(-ub.shape[0] // sup[0]), dtype=np.float32)
        qdense = np.zeros(post[0].shape[0] - 1, dtype=np.float32)
        for q in range(w, n_queries, n_workers):  # strided: neighbours in a batch cost alike
            lo, hi = q_indptr[q], q_indptr[q + 1]
            counts[q] = search_one(strategies[q], q_terms[lo:hi], q_weights[lo:hi], k, alpha, err_units, allowed, post,
                                   fwd, blk, sup, record, acc, touched, found, ub, sbub, qdense, out_docs[q],
                                   out_scores[q], strategies[q:q + 1])
    return out_docs, out_scores, counts
