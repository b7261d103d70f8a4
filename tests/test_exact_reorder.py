"""Document reordering by graph bisection: a permutation, that groups documents sharing terms."""

from __future__ import annotations

import numpy as np

from lsr.data import SparseVectors
from lsr.index import SparseIndex
from lsr.index.reorder import reorder_documents

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
