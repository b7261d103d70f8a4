"""Exact search is exact on the user's float vectors, by every strategy and by the planner.

The reference is a float64 brute force written independently of the index (a dense matrix
product). Exact means: the same documents as the reference top-k, ranked by score and then by
internal row, with the reference's scores; where float rounding makes two scores differ by less
than a tolerance, either may come first (the tie rule of :func:`assert_exact`).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsr.data import SparseVectors
from lsr.index import SparseIndex
from lsr.index.kernels.topk import HEAP_K, top_k_of
from lsr.index.modes import EXACT

VOCAB = [f"t{i}" for i in range(12)]
STRATEGIES = ("auto", "exhaustive", "blockmax", "superblock")
LAYOUTS = st.sampled_from([(64, "none"), (4, "none"), (3, "dominant"), (1, "dominant"), (2, "none"), (4, "bp")])


def dense(rows: list[dict[str, float]]) -> np.ndarray:
    m = np.zeros((len(rows), len(VOCAB)))
    for i, r in enumerate(rows):
        for t, w in r.items():
            m[i, VOCAB.index(t)] = np.float32(w)  # the index keeps float32 weights
    return m


def brute_force(docs: np.ndarray, query: dict[str, float], allowed: np.ndarray | None = None) -> np.ndarray:
    """Float64 scores of every document (-inf for those not hits: no shared term, or not allowed)."""
    q = np.zeros(len(VOCAB))
    for t, w in query.items():
        q[VOCAB.index(t)] = np.float32(w)
    scores = docs @ q
    hit = (docs[:, q > 0] > 0).any(axis=1)
    if allowed is not None:
        hit &= allowed
    return np.where(hit, scores, -np.inf)


def assert_exact(rows: np.ndarray, scores: np.ndarray, reference: np.ndarray, k: int, rel: float = 0.0) -> None:
    """``rows``/``scores`` are the top-k of ``reference`` (float64 scores per row, -inf: not a hit).

    With ``rel == 0`` the ranking must be the reference's exactly (score desc, then row asc);
    otherwise scores within ``rel`` of each other count as tied and may come in either order.
    """
    order = np.lexsort((np.arange(reference.shape[0]), -reference))
    expected = [int(r) for r in order if np.isfinite(reference[r])][:k]
    assert len(rows) == len(expected)
    if not expected:
        return
    np.testing.assert_allclose(scores, reference[rows], rtol=max(rel, 1e-12), atol=0)
    if rel == 0.0:
        assert rows.tolist() == expected
        return
    kth = reference[expected[-1]]
    tol = rel * abs(kth)
    assert len(set(rows.tolist())) == len(rows)
    assert (reference[rows] >= kth - tol).all()  # nothing clearly below the k-th
    clearly_in = {r for r in expected if reference[r] > kth + tol}
    assert clearly_in <= set(rows.tolist())  # nothing clearly above it missing
    assert (np.diff(scores) <= tol).all()


def build(rows, quantization="u16", layout=(64, "none")) -> SparseIndex:
    return SparseIndex.build(SparseVectors.from_dicts(rows, VOCAB), [f"d{i}" for i in range(len(rows))],
                             quantization=quantization, block_size=layout[0], reorder=layout[1])


def internal(index: SparseIndex, docs: np.ndarray) -> np.ndarray:
    """The reference's matrix in the index's row order (reordering permutes rows)."""
    return docs[[int(d[1:]) for d in index.doc_ids]]


def queries_of(index: SparseIndex, queries: list[dict[str, float]]) -> SparseVectors:
    return SparseVectors.from_dicts(queries, VOCAB)


# weights whose sums are exact in float32 and float64 alike: many exact ties
dyadic = st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0])
tie_rows = st.lists(st.dictionaries(st.sampled_from(VOCAB), dyadic, max_size=6), min_size=1, max_size=50)
tie_query = st.dictionaries(st.sampled_from(VOCAB), st.sampled_from([0.5, 1.0, 2.0, 4.0]), max_size=6)


@settings(max_examples=150, deadline=None)
@given(rows=tie_rows, queries=st.lists(tie_query, min_size=1, max_size=3), k=st.integers(1, 55),
       quantization=st.sampled_from(["u8", "u16"]), layout=LAYOUTS, masked=st.booleans(), data=st.data())
def test_every_strategy_equals_float64_brute_force_with_ties(rows, queries, k, quantization, layout, masked, data):
    """Exact ties everywhere: the ranking, tie-break by row included, is the reference's, alone
    and in a batch, with and without an allowed mask, for every strategy (u8 rounding merges
    and splits ties of the float weights: the float rescoring must undo that)."""
    allowed = np.array(data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))) if masked else None
    check_every_strategy(rows, queries, k, quantization, layout, allowed)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.dictionaries(st.sampled_from(VOCAB), dyadic, max_size=6), min_size=HEAP_K, max_size=400),
       queries=st.lists(tie_query, min_size=1, max_size=2), k=st.integers(HEAP_K + 1, 300),
       layout=LAYOUTS, masked=st.booleans(), data=st.data())
def test_a_large_k_equals_float64_brute_force_with_ties(rows, queries, k, layout, masked, data):
    """Past HEAP_K exhaustive search bucket-selects its hits: the same ranking, ties by row
    included, with hundreds of tied documents straddling the k-th."""
    allowed = np.array(data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))) if masked else None
    check_every_strategy(rows, queries, k, "u8", layout, allowed)


PADDING = {VOCAB[-1]: 1.0}  # a document no query below shares a term with


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.dictionaries(st.sampled_from(VOCAB[:-1]), dyadic, max_size=6), min_size=1, max_size=40),
       queries=st.lists(st.dictionaries(st.sampled_from(VOCAB[:-1]), st.sampled_from([0.5, 1.0, 2.0]), max_size=6),
                        min_size=1, max_size=2),
       k=st.integers(1, HEAP_K + 10), layout=LAYOUTS, masked=st.booleans(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_ties_rank_by_row_when_a_query_touches_few_documents(rows, queries, k, layout, masked, seed, data):
    """A query whose postings reach under a quarter of the documents gathers its hits in the
    order its posting lists find them, not by row: the running floor that thins them for small
    k must keep a hit tied with it (a later-found tie may have the lower row). Padding documents
    sharing no query term make every query take that path."""
    padded = rows + [PADDING] * (4 * 6 * len(rows) + 1)
    order = np.random.default_rng(seed).permutation(len(padded))  # hits spread among the padding
    padded = [padded[i] for i in order]
    allowed = np.array(data.draw(st.lists(st.booleans(), min_size=len(padded), max_size=len(padded)))) if masked else None
    check_every_strategy(padded, queries, k, "u16", layout, allowed)


def test_a_tie_found_after_the_floor_rose_still_wins_by_its_lower_row():
    rows = [{"t1": 1.0}, {"t0": 1.0}, {"t0": 1.0}] + [PADDING] * 20  # t0's list finds rows 1, 2 before t1's finds row 0
    index = build(rows)
    for k in (1, 2):
        for strategy in STRATEGIES:
            (hits,) = index.search(queries_of(index, [{"t0": 1.0, "t1": 1.0}]), k, strategy=strategy)
            assert hits.rows.tolist() == [0, 1][:k], (k, strategy)


def check_every_strategy(rows, queries, k, quantization, layout, allowed) -> None:
    index = build(rows, quantization, layout)
    docs = internal(index, dense(rows))
    q = queries_of(index, queries)
    for strategy in STRATEGIES:
        batch = index.search(q, k, strategy=strategy, allowed=allowed)
        for i, query in enumerate(queries):
            reference = brute_force(docs, query, allowed)
            one = index.search(q.take([i]), k, strategy=strategy, allowed=allowed)[0]
            for hits in (one, batch[i]):
                assert_exact(hits.rows, hits.scores, reference, k)
                assert hits.strategy in ("exhaustive", "blockmax", "superblock")
                if strategy != "auto":
                    assert hits.strategy == strategy
    for i, query in enumerate(queries):
        hits = index.search(q.take([i]), k, mode="exhaustive", allowed=allowed)[0]
        assert_exact(hits.rows, hits.scores, brute_force(docs, query, allowed), k)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 3000), k=st.integers(1, 3100) | st.integers(1, HEAP_K), ties=st.integers(1, 40), spread=st.integers(0, 60), seed=st.integers(0, 2**32 - 1))
def test_top_k_of_gathered_scores_is_a_sort_by_score_then_doc(n, k, ties, spread, seed):
    """The best k by score descending, then doc ascending, by heap (k <= HEAP_K) and by bucket
    select alike, whatever the scores' range (up to 2^60 apart: the bucket width adapts) and
    however many tie (values drawn from ``ties``)."""
    rng = np.random.default_rng(seed)
    scores = rng.choice(2.0 ** rng.uniform(-spread / 2, spread / 2, ties), n)
    docs = rng.permutation(max(n, 1) * 3)[:n].astype(np.int32)
    out_docs, out_scores = np.full(k, -1, np.int32), np.zeros(k)
    got = top_k_of(docs.copy(), scores.copy(), n, k, out_docs, out_scores)
    order = np.lexsort((docs, -scores))[:k]
    assert got == min(n, k)
    assert out_docs[:got].tolist() == docs[order].tolist()
    assert out_scores[:got].tolist() == scores[order].tolist()


# weights closer than one u8 step (max 2: a step is 0.0078) round to the same impact
CLOSE = st.sampled_from([2.0, 1.0, 1.001, 1.002, 1.003, 0.999, 0.5, 0.501])


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.dictionaries(st.sampled_from(VOCAB), st.floats(0, 5, width=32) | CLOSE, max_size=8), min_size=1, max_size=80),
    query=st.dictionaries(st.sampled_from(VOCAB), st.floats(2.0**-10, 3, width=32), max_size=8),
    k=st.integers(1, 30), quantization=st.sampled_from(["u8", "u16"]), layout=LAYOUTS,
)
def test_every_strategy_is_exact_on_random_floats(rows, query, k, quantization, layout):
    """Arbitrary floats (tiny weights next to large ones, near-ties): float64 scores and the
    reference top-k, near-ties (1e-9 relative) in either order."""
    index = build(rows, quantization, layout)
    reference = brute_force(internal(index, dense(rows)), query)
    q = queries_of(index, [query])
    for strategy in STRATEGIES:
        hits = index.search(q, k, strategy=strategy)[0]
        assert_exact(hits.rows, hits.scores, reference, k, rel=1e-9)


def test_quantized_ranking_inverts_a_pair_and_exact_search_does_not():
    """u8 with a largest weight of 2 (one step s = 2/255): A = {t1, t2: 50.45 s} rounds down to
    100 steps, B = {t1: 100.55 s} up to 101, so impacts rank B first while the floats say
    A (100.9 s > 100.55 s). Equal impacts of 1.0 and 1.004 must also split by float score."""
    s = 2.0 / 255
    rows = [{"t3": 2.0}, {"t1": 100.55 * s}, {"t1": 50.45 * s, "t2": 50.45 * s}, {"t4": 1.0}, {"t4": 1.004}]
    index = build(rows, "u8")
    for strategy in STRATEGIES:
        (pair,) = index.search(queries_of(index, [{"t1": 1.0, "t2": 1.0}]), 1, strategy=strategy)
        assert pair.rows.tolist() == [2]
        (close,) = index.search(queries_of(index, [{"t4": 1.0}]), 2, strategy=strategy)
        assert close.rows.tolist() == [4, 3]
        np.testing.assert_allclose(close.scores, [np.float32(1.004), 1.0], rtol=1e-12)


def test_random_collection_with_deletions_every_strategy():
    """A real-sized random index: every strategy and the planner agree with the reference."""
    rng = np.random.default_rng(5)
    vocab = [f"w{i}" for i in range(400)]
    rows = [{vocab[t]: float(rng.gamma(0.7)) for t in rng.choice(400, rng.integers(1, 50), replace=False)} for _ in range(3000)]
    index = SparseIndex.build(SparseVectors.from_dicts(rows, vocab), [str(i) for i in range(3000)], block_size=16,
                              reorder="dominant", quantization="u8")
    m = np.zeros((3000, 400))
    for i, r in enumerate(rows):
        for t, w in r.items():
            m[i, vocab.index(t)] = np.float32(w)
    m = m[[int(d) for d in index.doc_ids]]
    allowed = rng.random(3000) < 0.7
    queries = [{vocab[t]: float(rng.random()) for t in rng.choice(400, n, replace=False)} for n in (1, 2, 5, 20, 60) for _ in range(4)]
    q = SparseVectors.from_dicts(queries, vocab)
    for k in (1, 10, 200):
        for strategy in STRATEGIES:
            for mask in (None, allowed):
                for i, hits in enumerate(index.search(q, k, strategy=strategy, allowed=mask, threads=2)):
                    qv = np.zeros(400)
                    for t, w in queries[i].items():
                        qv[vocab.index(t)] = np.float32(w)
                    ref = m @ qv
                    ref = np.where(((m[:, qv > 0] > 0).any(axis=1)) & (True if mask is None else mask), ref, -np.inf)
                    assert_exact(hits.rows, hits.scores, ref, k, rel=1e-9)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_alpha_and_beta_work_with_every_strategy(strategy):
    """BMP's knobs are accepted by every strategy; alpha < 1 may only lose hits, never invent
    scores (each returned score is the document's float score)."""
    rng = np.random.default_rng(1)
    vocab = [f"w{i}" for i in range(100)]
    rows = [{vocab[t]: float(rng.gamma(1.0)) for t in rng.choice(100, 20, replace=False)} for _ in range(800)]
    index = SparseIndex.build(SparseVectors.from_dicts(rows, vocab), [str(i) for i in range(800)], block_size=8)
    q = SparseVectors.from_dicts([{vocab[t]: float(rng.random()) for t in rng.choice(100, 10, replace=False)}], vocab)
    exact = index.search(q, 800, mode="exhaustive")[0]
    full = dict(zip(exact.rows.tolist(), exact.scores.tolist()))
    for alpha, beta in ((1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (0.7, 0.5)):
        hits = index.search(q, 20, strategy=strategy, alpha=alpha, beta=beta)[0]
        assert len(hits) == 20 and (np.diff(hits.scores) <= 0).all()
        if beta == 1.0:
            assert all(full[r] == pytest.approx(s, rel=1e-12) for r, s in zip(hits.rows.tolist(), hits.scores))


def test_strategy_knob_is_validated():
    index = build([{"t1": 1.0}])
    assert "strategy" in EXACT.knob_names
    with pytest.raises(ValueError, match="strategy must be one of auto, exhaustive, blockmax, superblock"):
        index.search(queries_of(index, [{"t1": 1.0}]), 1, strategy="wand")
    with pytest.raises(ValueError, match="has no knob 'strategy'"):
        index.search(queries_of(index, [{"t1": 1.0}]), 1, mode="exhaustive", strategy="blockmax")


def test_planner_prunes_a_skewed_query_and_scores_a_spread_one_exhaustively():
    """A heavy rare term next to a light term in every document (BM25-like) makes superblock
    pruning cheap; a query whose terms are in every superblock once has bounds as costly as
    its postings. Either way the answer is the exhaustive one."""
    rng = np.random.default_rng(2)
    n, vocab = 20000, [f"w{i}" for i in range(2001)]
    rows = [{vocab[0]: 0.1 + 0.01 * rng.random(), vocab[1 + i % 2000]: 5.0 + rng.random()} for i in range(n)]
    index = SparseIndex.build(SparseVectors.from_dicts(rows, vocab), [str(i) for i in range(n)], reorder="dominant")
    skewed = SparseVectors.from_dicts([{vocab[0]: 1.0, vocab[7]: 1.0}], vocab)
    (auto,) = index.search(skewed, 5)
    assert auto.strategy == "superblock"
    (reference,) = index.search(skewed, 5, mode="exhaustive")
    assert auto.rows.tolist() == reference.rows.tolist()
    # a k one superblock (8 blocks of 32 documents) cannot hold: no probe, which would score blind
    for k, strategy in ((256, "superblock"), (257, "exhaustive")):
        (hits,) = index.search(skewed, k)
        assert hits.strategy == strategy
        (reference,) = index.search(skewed, k, mode="exhaustive")
        assert (hits.rows.tolist(), hits.scores.tolist()) == (reference.rows.tolist(), reference.scores.tolist())
    # each term once per superblock (256 documents): its superblock bounds cost as much as its postings
    spread = [{vocab[i % 256]: 1.0 + rng.random()} for i in range(3000)]
    spread_index = SparseIndex.build(SparseVectors.from_dicts(spread, vocab), [str(i) for i in range(3000)])
    q = SparseVectors.from_dicts([{vocab[t]: 1.0 for t in range(256)}], vocab)
    (hits,) = spread_index.search(q, 10)
    assert hits.strategy == "exhaustive"
    assert hits.rows.tolist() == spread_index.search(q, 10, strategy="superblock")[0].rows.tolist()


def test_planner_stops_probing_where_probes_fail_and_keeps_probing_where_they_win():
    """Over flat weights every superblock reaches the floor, so each probe gives up: past its
    warm-up the planner probes only one such query in EXPLORE. Where probes win it keeps
    running them. Either way every answer is the exhaustive one."""
    from lsr.index.kernels.exact import EXPLORE, PROBE_WARMUP

    rng = np.random.default_rng(5)
    n, vocab = 20000, [f"w{i}" for i in range(10010)]
    rows = [{vocab[i]: 1.0 + 1e-3 * rng.random() for i in range(10)}
            | {vocab[10 + t]: float(rng.random()) for t in rng.choice(10000, 40, replace=False)} for _ in range(n)]
    flat = SparseIndex.build(SparseVectors.from_dicts(rows, vocab), [str(i) for i in range(n)])
    queries = SparseVectors.from_dicts([{vocab[i % 10]: 1.0} for i in range(200)], vocab)
    for i in range(len(queries)):
        one = queries.take([i])
        (auto,) = flat.search(one, 10)
        (reference,) = flat.search(one, 10, mode="exhaustive")
        assert (auto.rows.tolist(), auto.scores.tolist()) == (reference.rows.tolist(), reference.scores.tolist())
    record = flat.planner_record()[8]  # k = 10 is in the range from 8
    assert record["eligible"] == 200 and record["wins"] == 0, record
    assert record["probes"] == PROBE_WARMUP + (200 - PROBE_WARMUP) // EXPLORE, record  # the warm-up ends on an EXPLORE-th

    skewed = [{vocab[0]: 0.1 + 0.01 * rng.random(), vocab[1 + i % 2000]: 5.0 + rng.random()} for i in range(n)]
    pruned = SparseIndex.build(SparseVectors.from_dicts(skewed, vocab), [str(i) for i in range(n)], reorder="dominant")
    q = SparseVectors.from_dicts([{vocab[0]: 1.0, vocab[1 + i]: 1.0} for i in range(100)], vocab)
    assert {h.strategy for h in pruned.search(q, 5, threads=1)} == {"superblock"}
    assert pruned.planner_record()[4] == {"eligible": 100, "probes": 100, "wins": 100}
