"""Score fusion of ranked candidate lists: reciprocal rank fusion and normalized interpolation.

A list is ``(rows, scores)``, best first, over one shared id space (the index's internal
document rows). Results are ``(rows, scores)`` best first; equal fused scores are ordered by
the lower row, as the sparse index orders ties, so fusion is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FUSIONS = ("rrf", "linear")
NORMALIZATIONS = ("minmax", "zscore")
RRF_K = 60  # Cormack, Clarke and Buettcher (SIGIR 2009): the constant their experiments settled on

Ranked = tuple[np.ndarray, np.ndarray]


def rrf(lists: Sequence[Ranked], k: int, *, rrf_k: float = RRF_K) -> Ranked:
    """Reciprocal rank fusion: ``sum over lists of 1 / (rrf_k + rank)``, ranks from 1.

    Only ranks matter, so lists on incomparable scales fuse without normalization; a document
    absent from a list gets nothing from it.
    """
    if rrf_k < 0:
        raise ValueError(f"rrf_k must be >= 0, got {rrf_k!r}")
    rows = [np.asarray(r, dtype=np.int64) for r, _ in lists]
    union, where = _union(rows)
    fused = np.zeros(len(union), dtype=np.float64)
    for r, pos in zip(rows, where):
        np.add.at(fused, pos, 1.0 / (rrf_k + np.arange(1, len(r) + 1)))
    return _top(union, fused, k)


def linear(sparse: Ranked, dense: Ranked, k: int, *, dense_weight: float, normalization: str = "minmax") -> Ranked:
    """``dense_weight * dense + (1 - dense_weight) * sparse`` over normalized scores
    (``dense_weight`` in [0, 1], as the ``dense_weight`` knob checks).

    Each list is normalized on its own (min-max to [0, 1], or z-scores); a document missing
    from a list takes that list's lowest normalized score, since it ranked below everything
    the list returned (as pyserini's hybrid searcher fills in the lowest score). A list whose
    scores are all equal, or that has one candidate, cannot tell its documents apart and adds
    the same amount to all of them.
    """
    lists = [(np.asarray(r, dtype=np.int64), np.asarray(s, dtype=np.float64)) for r, s in (sparse, dense)]
    union, where = _union([r for r, _ in lists])
    fused = np.zeros(len(union), dtype=np.float64)
    for weight, (r, s), pos in zip((1.0 - dense_weight, dense_weight), lists, where):
        if len(r):
            z = normalize(s, normalization)
            column = np.full(len(union), z.min())
            column[pos] = z
            fused += weight * column
    return _top(union, fused, k)


def normalize(scores: np.ndarray, method: str) -> np.ndarray:
    """Min-max to [0, 1] or z-scores; constant scores (one candidate included) map to 0."""
    scores = np.asarray(scores, dtype=np.float64)
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {method!r}")
    if not len(scores):
        return scores
    if method == "minmax":
        lo, spread = scores.min(), np.ptp(scores)
    else:
        lo, spread = scores.mean(), scores.std()
    return (scores - lo) / spread if spread > 0 else np.zeros_like(scores)


def _union(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Distinct rows of all lists, ascending, and each list's positions in it."""
    for r in rows:
        if len(np.unique(r)) != len(r):
            raise ValueError("a candidate list holds a document twice")
    union = np.unique(np.concatenate(rows)) if rows else np.zeros(0, np.int64)
    return union, [np.searchsorted(union, r) for r in rows]


def _top(rows: np.ndarray, scores: np.ndarray, k: int) -> Ranked:
    order = np.lexsort((rows, -scores))[:k]  # best score first, then the lower row
    return rows[order], scores[order]
