"""Document reordering by graph bisection: a permutation, that groups documents sharing terms."""

from __future__ import annotations

import numpy as np

from lsr.bench.exact import block_entries
from lsr.data import SparseVectors
from lsr.index import SparseIndex
from lsr.index.kernels.bp_reorder import graph_bisection
from lsr.index.reorder import BP_ITERATIONS, reorder_documents

VOCAB = [f"t{i}" for i in range(40)]


def test_bisection_separates_two_interleaved_topics():
    """Even documents use terms 0-19, odd ones 20-39: bisection must put each topic in its own
    half, so every 16-document block holds one topic (half the block entries of the input)."""
    rng = np.random.default_rng(0)
    rows = [{VOCAB[t + (20 if i % 2 else 0)]: 1.0 for t in rng.choice(20, 6, replace=False)} for i in range(64)]
    vecs = SparseVectors.from_dicts(rows, VOCAB)
    perm = reorder_documents(vecs, "bp", block_size=16)
    assert sorted(perm.tolist()) == list(range(64))
    topics = np.array([int(p) % 2 for p in perm])
    assert (topics[:32] == topics[0]).all() and (topics[32:] == 1 - topics[0]).all()
    ordered = SparseIndex.build(vecs, [str(i) for i in range(64)], block_size=16, reorder="bp")
    plain = SparseIndex.build(vecs, [str(i) for i in range(64)], block_size=16)
    assert ordered.blocks.tb_blocks.shape[0] < plain.blocks.tb_blocks.shape[0]
    assert [ordered.doc_ids[i] for i in range(64)] == [str(p) for p in perm]
    assert block_entries(vecs, perm, 16) == ordered.blocks.tb_blocks.shape[0]  # the benchmark's count


def test_bisection_keeps_every_document_and_exactness_on_random_data():
    rng = np.random.default_rng(4)
    rows = [{VOCAB[t]: float(rng.gamma(1.0)) for t in rng.choice(40, rng.integers(0, 12), replace=False)} for _ in range(777)]
    vecs = SparseVectors.from_dicts(rows, VOCAB)
    ordered = SparseIndex.build(vecs, [str(i) for i in range(777)], block_size=8, reorder="bp")
    plain = SparseIndex.build(vecs, [str(i) for i in range(777)], block_size=8)
    q = SparseVectors.from_dicts([{VOCAB[t]: 1.0 + t / 10 for t in range(0, 40, 3)}], VOCAB)
    truth = plain.search(q, 50, mode="exhaustive")[0]
    for strategy in ("auto", "exhaustive", "blockmax", "superblock"):
        hits = ordered.search(q, 50, strategy=strategy)[0]
        np.testing.assert_allclose(hits.scores, truth.scores, rtol=1e-12)
        assert {ordered.doc_ids[r] for r in hits.rows} == {plain.doc_ids[r] for r in truth.rows}


def _clustered(n: int, n_vocab: int, seed: int) -> SparseVectors:
    """n documents of 50 topics: 20 terms of their topic's 60, 10 from anywhere."""
    rng = np.random.default_rng(seed)
    vocab = [f"t{i}" for i in range(n_vocab)]
    rows = []
    for topic in rng.integers(0, 50, n):
        terms = np.concatenate([topic * 60 + rng.choice(60, 20, replace=False), rng.choice(n_vocab, 10, replace=False)])
        rows.append({vocab[t]: 1.0 for t in terms})
    return SparseVectors.from_dicts(rows, vocab)


def test_bisection_is_one_permutation_whatever_the_thread_count():
    """Threads share a level's ranges, or a range's passes while there are fewer ranges than
    threads: the order must not depend on how many there are, nor on the run."""
    vecs = _clustered(3000, 3000, seed=1)
    runs = [graph_bisection(vecs.indptr.astype(np.int64), vecs.indices.astype(np.uint16), len(vecs.vocab), 32,
                            BP_ITERATIONS, workers) for workers in (1, 2, 3, 2)]
    assert sorted(runs[0].tolist()) == list(range(3000))
    for perm in runs[1:]:
        np.testing.assert_array_equal(perm, runs[0])


def test_bisection_groups_topics_into_blocks_with_a_large_vocabulary():
    """Over 65,536 terms the term ids stay 32-bit: the order is a permutation that cuts the
    block entries of clustered documents in random order by 40% (the best order: 53%)."""
    vecs = _clustered(2000, 70_000, seed=2)
    perm = reorder_documents(vecs, "bp", block_size=16)
    assert sorted(perm.tolist()) == list(range(2000))
    ordered = SparseIndex.build(vecs, [str(i) for i in range(2000)], block_size=16, reorder="bp")
    plain = SparseIndex.build(vecs, [str(i) for i in range(2000)], block_size=16)
    assert ordered.blocks.tb_blocks.shape[0] < 0.6 * plain.blocks.tb_blocks.shape[0]


def test_bisection_of_tiny_and_empty_collections():
    for rows in ([], [{}], [{"t1": 1.0}, {}], [{"t1": 1.0}, {"t2": 1.0}, {"t1": 2.0}]):
        perm = reorder_documents(SparseVectors.from_dicts(rows, VOCAB), "bp", block_size=1)
        assert sorted(perm.tolist()) == list(range(len(rows)))
