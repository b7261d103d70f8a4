"""Score fusion of any number of ranked candidate lists: (weighted) reciprocal rank fusion and
normalized weighted interpolation.

A list is ``(rows, scores)``, best first, over one shared id space (the index's internal
document rows, or the positions :func:`fuse_ids` gives string ids). Results are ``(rows,
scores)`` best first; equal fused scores are ordered by the lower row, as the sparse index
orders ties, so fusion is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FUSIONS = ("rrf", "linear")
NORMALIZATIONS = ("minmax", "zscore")
RRF_K = 60  # Cormack, Clarke and Buettcher (SIGIR 2009): the constant their experiments settled on

Ranked = tuple[np.ndarray, np.ndarray]


def rrf(lists: Sequence[Ranked], k: int, *, rrf_k: float = RRF_K, weights: Sequence[float] | None = None) -> Ranked:
    """Reciprocal rank fusion: ``sum over lists of weight / (rrf_k + rank)``, ranks from 1
    (every weight 1 unless ``weights`` are given, one per list).

    Only ranks matter, so lists on incomparable scales fuse without normalization; a document
    absent from a list gets nothing from it.
    """
    if rrf_k < 0:
        raise ValueError(f"rrf_k must be >= 0, got {rrf_k!r}")
    rows = [np.asarray(r, dtype=np.int64) for r, _ in lists]
    weights = check_weights(weights, len(rows)) if weights is not None else [1.0] * len(rows)
    union, where = _union(rows)
    fused = np.zeros(len(union), dtype=np.float64)
    for weight, r, pos in zip(weights, rows, where):
        np.add.at(fused, pos, weight / (rrf_k + np.arange(1, len(r) + 1)))
    return _top(union, fused, k)


def linear(sparse: Ranked, dense: Ranked, k: int, *, dense_weight: float, normalization: str = "minmax") -> Ranked:
    """``dense_weight * dense + (1 - dense_weight) * sparse``: :func:`weighted` for the hybrid
    modes (``dense_weight`` in [0, 1], as the ``dense_weight`` knob checks)."""
    return weighted([sparse, dense], [1.0 - dense_weight, dense_weight], k, normalization=normalization)


def weighted(lists: Sequence[Ranked], weights: Sequence[float], k: int, *, normalization: str = "minmax") -> Ranked:
    """``sum over lists of weight x normalized score``.

    Each list is normalized on its own (min-max to [0, 1], or z-scores); a document missing
    from a list takes that list's lowest normalized score, since it ranked below everything
    the list returned (as pyserini's hybrid searcher fills in the lowest score). A list whose
    scores are all equal, or that has one candidate, cannot tell its documents apart and adds
    the same amount to all of them.
    """
    lists = [(np.asarray(r, dtype=np.int64), np.asarray(s, dtype=np.float64)) for r, s in lists]
    if len(weights) != len(lists):
        raise ValueError(f"{len(weights)} weights for {len(lists)} lists")
    union, where = _union([r for r, _ in lists])
    fused = np.zeros(len(union), dtype=np.float64)
    for weight, (r, s), pos in zip(weights, lists, where):
        if len(r):
            z = normalize(s, normalization)
            column = np.full(len(union), z.min())
            column[pos] = z
            fused += weight * column
    return _top(union, fused, k)


def fuse(lists: Sequence[Ranked], k: int, *, fusion: str = "rrf", weights: Sequence[float] | None = None,
         rrf_k: float = RRF_K, normalization: str = "minmax") -> Ranked:
    """Fuse any number of lists with ``fusion`` (``rrf`` or ``linear``), ``weights`` one per
    list (checked: finite, >= 0, not all 0; default all 1)."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    weights = check_weights(weights, len(lists)) if weights is not None else [1.0] * len(lists)
    if fusion == "rrf":
        return rrf(lists, k, rrf_k=rrf_k, weights=weights)
    return weighted(lists, weights, k, normalization=normalization)


def fuse_ids(lists: Sequence[tuple[Sequence[str], Sequence[float]]], k: int, **options) -> tuple[list[str], list[float]]:
    """:func:`fuse` over string document ids (lists from different indexes); ties go to the id
    that appears first (in the first list's order, then the next list's)."""
    position: dict[str, int] = {}
    ranked = []
    for ids, scores in lists:
        rows = np.array([position.setdefault(d, len(position)) for d in ids], dtype=np.int64)
        ranked.append((rows, np.asarray(scores, dtype=np.float64)))
    rows, scores = fuse(ranked, k, **options)
    names = list(position)
    return [names[r] for r in rows], scores.tolist()


def check_weights(weights: Sequence[float], n: int) -> list[float]:
    """One finite weight >= 0 per list, not all 0, or a ValueError saying which rule broke."""
    weights = list(weights)
    if len(weights) != n:
        raise ValueError(f"{len(weights)} weights for {n} systems: give one per system")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not np.isfinite(w) or w < 0:
            raise ValueError(f"fusion weights must be finite numbers >= 0, got {w!r}")
    if not any(weights):
        raise ValueError("fusion weights are all 0: at least one system must count")
    return [float(w) for w in weights]


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
