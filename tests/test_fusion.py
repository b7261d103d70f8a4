"""Score fusion on hand-made candidate lists: RRF formula, normalizations and their edge cases."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsr.retrieval.fusion import linear, normalize, rrf
from lsr.retrieval.modes import MODES


def ranked(rows, scores=None):
    rows = np.asarray(rows, dtype=np.int64)
    return rows, np.asarray(scores if scores is not None else -np.arange(len(rows)), dtype=np.float64)


def test_rrf_formula_and_tie_order():
    rows, scores = rrf([ranked([1, 2, 3]), ranked([3, 4])], k=10, rrf_k=60)
    assert rows.tolist() == [3, 1, 2, 4]  # 2 and 4 tie at 1/62: the lower row first
    assert scores == pytest.approx([1 / 63 + 1 / 61, 1 / 61, 1 / 62, 1 / 62])


def test_rrf_ignores_scores_and_truncates():
    rows, _ = rrf([ranked([5, 6], [100.0, -3.0]), ranked([6, 5], [0.2, 0.1])], k=1)
    assert rows.tolist() == [5]  # equal sums 1/61 + 1/62: lower row
    assert rrf([ranked([]), ranked([])], k=5)[0].tolist() == []
    assert rrf([ranked([]), ranked([7])], k=5)[0].tolist() == [7]
    with pytest.raises(ValueError, match="rrf_k"):
        rrf([ranked([1])], k=1, rrf_k=-1)


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_normalize_edge_cases(method):
    assert normalize(np.array([]), method).tolist() == []
    assert normalize(np.array([3.0]), method).tolist() == [0.0]  # one candidate tells nothing
    assert normalize(np.array([2.0, 2.0, 2.0]), method).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="normalization"):
        normalize(np.array([1.0]), "softmax")


def test_normalize_values():
    assert normalize(np.array([1.0, 3.0, 2.0]), "minmax").tolist() == [0.0, 1.0, 0.5]
    z = normalize(np.array([1.0, 3.0]), "zscore")
    assert z.tolist() == [-1.0, 1.0]


def test_linear_missing_document_takes_the_lowest_score():
    sparse = ranked([1, 2], [10.0, 0.0])  # min-max: 1 -> 1, 2 -> 0
    dense = ranked([3, 1], [0.9, 0.5])  # min-max: 3 -> 1, 1 -> 0
    rows, scores = linear(sparse, dense, k=10, dense_weight=0.25)
    # 1: .75*1 + .25*0; 3: .75*0 (missing: lowest) + .25*1; 2: .75*0 + .25*0 (missing: lowest)
    assert rows.tolist() == [1, 3, 2]
    assert scores == pytest.approx([0.75, 0.25, 0.0])


def test_linear_weight_extremes_follow_one_side():
    sparse, dense = ranked([1, 2, 3], [3.0, 2.0, 1.0]), ranked([3, 2, 1], [0.9, 0.8, 0.7])
    assert linear(sparse, dense, k=3, dense_weight=0.0)[0].tolist() == [1, 2, 3]
    assert linear(sparse, dense, k=3, dense_weight=1.0)[0].tolist() == [3, 2, 1]
    assert linear(sparse, dense, k=3, dense_weight=1.0, normalization="zscore")[0].tolist() == [3, 2, 1]


def test_linear_single_and_empty_lists():
    rows, scores = linear(ranked([4], [7.0]), ranked([], []), k=5, dense_weight=0.5)
    assert rows.tolist() == [4] and scores.tolist() == [0.0]
    assert linear(ranked([]), ranked([]), k=5, dense_weight=0.5)[0].tolist() == []
    rows, _ = linear(ranked([4], [7.0]), ranked([5, 4], [0.9, 0.1]), k=5, dense_weight=0.5)
    assert rows.tolist() == [5, 4]


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        (-0.1, "dense_weight must be in [0, 1], got -0.1"),
        (1.5, "dense_weight must be in [0, 1], got 1.5"),
        (float("nan"), "dense_weight must be a number in [0, 1], got nan"),
        (True, "dense_weight must be a number in [0, 1], got True"),
        ("0.5", "dense_weight must be a number in [0, 1], got '0.5'"),
        ([0.5, 1.5], "dense_weight must be in [0, 1], got 1.5"),  # per query: each value checked
    ],
)
def test_the_dense_weight_knob_rejects_bad_weights(weight, message):
    """linear() takes the weight as given; the knob of every fused mode checks it."""
    for mode in ("hybrid", "selective"):
        with pytest.raises(ValueError, match=re.escape(message)):
            MODES[mode].check_knobs({"dense_weight": weight})
    assert MODES["hybrid"].check_knobs({"dense_weight": 1}) == {"dense_weight": 1.0}
    assert MODES["selective"].check_knobs({"dense_weight": [0, 0.25]}) == {"dense_weight": [0.0, 0.25]}


def test_duplicate_candidates_are_an_error():
    with pytest.raises(ValueError, match="twice"):
        rrf([ranked([1, 1])], k=2)


lists = st.lists(st.integers(0, 30), unique=True, max_size=12)


@settings(max_examples=60, deadline=None)
@given(a=lists, b=lists, k=st.integers(1, 40), dense_weight=st.floats(0, 1), method=st.sampled_from(["minmax", "zscore"]))
def test_fusions_return_the_union_best_first(a, b, k, dense_weight, method):
    rng = np.random.default_rng(len(a) * 31 + len(b))
    sparse = ranked(a, np.sort(rng.random(len(a)))[::-1])
    dense = ranked(b, np.sort(rng.random(len(b)))[::-1])
    for rows, scores in (rrf([sparse, dense], k), linear(sparse, dense, k, dense_weight=dense_weight, normalization=method)):
        assert set(rows.tolist()) <= set(a) | set(b)
        assert len(rows) == min(k, len(set(a) | set(b)))
        assert np.all(np.diff(scores) <= 1e-12)
