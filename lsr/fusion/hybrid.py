"""Dense, hybrid and selective-hybrid search over an index that has a dense part.

- ``dense``: the top k of the faiss index alone.
- ``hybrid``: exact sparse top ``depth`` and dense top ``depth``, fused (RRF by default, or
  ``fusion="linear"`` with weight ``alpha`` on the dense side).
- ``selective``: as ``hybrid``, but the dense side scores only the clusters chosen from the
  sparse candidates and the query (:mod:`lsr.fusion.selective`); each result reports the
  fraction of the dense vectors it scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.errors import DataError
from lsr.fusion.fuse import FUSIONS, NORMALIZATIONS, RRF_K, check_alpha, linear, rrf
from lsr.fusion.selective import selective_dense
from lsr.index.dense import DENSE_MODES, DenseIndex
from lsr.index.index import Query, SearchResult

if TYPE_CHECKING:
    from lsr.index import Index

DEFAULT_DEPTH = 100  # candidates taken from each side before fusing (at least k)
DEFAULT_ALPHA = 0.5  # linear fusion: equal weights, fixed a priori (not tuned on any test queries)
DEFAULT_CANDIDATES = 10  # selective: clusters of the sparse top-10 are scored
DEFAULT_CENTROIDS = 4  # selective: plus the 4 clusters whose centroids are closest to the query


@dataclass(frozen=True)
class HybridResult(SearchResult):
    """Hits of one query, plus the fraction of the dense vectors scored to find them (None when
    an approximate faiss index (HNSW, IVF) did the dense search and does not tell)."""

    dense_fraction: float | None = None


@dataclass(frozen=True)
class HybridQueries:
    """Queries encoded for both sides: sparse rows over the index vocabulary (None for ``dense``
    mode) and one dense unit vector per query."""

    sparse: SparseVectors | None
    dense: np.ndarray

    def __len__(self) -> int:
        return len(self.dense)

    def take(self, rows: Sequence[int]) -> "HybridQueries":
        return HybridQueries(self.sparse.take(rows) if self.sparse is not None else None, self.dense[list(rows)])


def dense_part(index: "Index") -> DenseIndex:
    if index.dense is None:
        where = f" {index.path}" if index.path else ""
        raise DataError(f"the index{where} has no dense part: build it with `lsr index --dense-model M` (or lsr.index.dense.add_dense)")
    return index.dense


def encode_hybrid(index: "Index", queries: Sequence[Query], mode: str = "hybrid") -> HybridQueries:
    """Encode text queries with the dense model (and the sparse one, unless ``mode="dense"``)."""
    check_mode(mode)
    dense = dense_part(index)
    texts = [q for q in queries if isinstance(q, str)]
    if len(texts) != len(queries):
        raise DataError(f"mode {mode!r} needs text queries: a {{term: weight}} query has no dense encoding")
    sparse = index.encode_queries(texts) if mode != "dense" else None
    return HybridQueries(sparse, dense.encoder.encode_queries(texts))


def search_hybrid(index: "Index", queries: Sequence[Query], k: int = 10, *, mode: str = "hybrid", **options: Any) -> list[HybridResult]:
    """Encode text ``queries`` and search them (see :func:`search_hybrid_encoded` for ``options``)."""
    index._check_k(k)
    check_mode(mode)
    return search_hybrid_encoded(index, encode_hybrid(index, queries, mode), k, mode=mode, **options) if len(queries) else []


def search_hybrid_encoded(
    index: "Index",
    queries: HybridQueries,
    k: int = 10,
    *,
    mode: str = "hybrid",
    fusion: str = "rrf",
    alpha: float | Sequence[float] | None = None,
    normalization: str = "minmax",
    depth: int = DEFAULT_DEPTH,
    rrf_k: float = RRF_K,
    candidates: int = DEFAULT_CANDIDATES,
    centroids: int = DEFAULT_CENTROIDS,
    ef_search: int | None = None,
    nprobe: int | None = None,
    beta: float = 1.0,
    threads: int | None = None,
) -> list[HybridResult]:
    """Search encoded queries in ``mode`` ``dense``, ``hybrid`` or ``selective``.

    ``alpha`` (linear fusion's dense weight, default 0.5) may be one value or one per query.
    ``depth`` candidates come from each side (at least ``k``). ``candidates`` and ``centroids``
    steer selective search; ``ef_search`` (HNSW) and ``nprobe`` (IVF) the faiss index. The
    sparse side is always exact (``beta`` must stay 1).
    """
    k = index._check_k(k)
    check_mode(mode)
    dense = dense_part(index)
    if beta != 1.0:
        raise ValueError(f"beta applies to the sparse modes only; mode {mode!r} searches the sparse side exactly")
    alphas = _alphas(alpha, len(queries), fusion)
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    for name, value in (("depth", depth), ("candidates", candidates), ("centroids", centroids + 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a {'non-negative' if name == 'centroids' else 'positive'} integer, got {value!r}")
    qd = dense.check_queries(queries.dense)
    if mode != "dense" and (queries.sparse is None or len(queries.sparse) != len(qd)):
        raise DataError(f"mode {mode!r} needs a sparse encoding of every query")
    full_fraction = 1.0 if dense.settings["kind"] == "flat" else None  # HNSW/IVF do not tell
    if mode == "dense":
        scores, rows = dense.search(qd, k, ef_search=ef_search, nprobe=nprobe)
        return [_result(index, *_found(rows[i], scores[i]), full_fraction) for i in range(len(qd))]
    depth = max(depth, k)
    sparse_hits = index.search_encoded(queries.sparse, depth, threads=threads)
    if mode == "hybrid":
        d_scores, d_rows = dense.search(qd, depth, ef_search=ef_search, nprobe=nprobe)
    out = []
    for i, hits in enumerate(sparse_hits):
        sparse = (_rows(index, hits.ids), np.asarray(hits.scores))
        if mode == "hybrid":
            dense_list, fraction = _found(d_rows[i], d_scores[i]), full_fraction
        else:
            rows, scores, fraction = selective_dense(dense, qd[i], sparse[0], depth, candidates=candidates, centroids=centroids)
            dense_list = (rows, scores)
        if fusion == "rrf":
            fused = rrf([sparse, dense_list], k, rrf_k=rrf_k)
        else:
            fused = linear(sparse, dense_list, k, alpha=alphas[i], normalization=normalization)
        out.append(_result(index, *fused, fraction))
    return out


def check_mode(mode: str) -> None:
    if mode not in DENSE_MODES:
        raise ValueError(f"mode must be one of {DENSE_MODES} here, got {mode!r}")


def _alphas(alpha: float | Sequence[float] | None, n: int, fusion: str) -> list[float]:
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if alpha is None:
        return [DEFAULT_ALPHA] * n
    if fusion != "linear":
        raise ValueError("alpha weighs linear fusion; RRF takes none (use fusion='linear')")
    if isinstance(alpha, Sequence) and not isinstance(alpha, str):
        if len(alpha) != n:
            raise ValueError(f"{len(alpha)} alpha values for {n} queries")
        return [check_alpha(a) for a in alpha]
    return [check_alpha(alpha)] * n


def _found(rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop faiss's -1 padding (fewer hits than asked)."""
    keep = rows >= 0
    return rows[keep].astype(np.int64), scores[keep]


def _rows(index: "Index", ids: Sequence[str]) -> np.ndarray:
    position: Mapping[str, int] = index._doc_position()
    return np.fromiter((position[d] for d in ids), dtype=np.int64, count=len(ids))


def _result(index: "Index", rows: np.ndarray, scores: np.ndarray, fraction: float | None) -> HybridResult:
    return HybridResult([index.doc_ids[r] for r in rows], np.asarray(scores, dtype=np.float64).tolist(), fraction)


# Numeric knobs of the dense modes for callers that pass settings as numbers (the REST
# service): name -> inclusive range. Giving ``alpha`` selects linear fusion (min-max); without
# it, the hybrid modes fuse by RRF.
_FUSION_KNOBS = {"alpha": (0.0, 1.0), "depth": (1, 1000), "rrf_k": (0, 1000)}
KNOBS: dict[str, dict[str, tuple[float, float]]] = {
    "dense": {},
    "hybrid": _FUSION_KNOBS,
    "selective": {**_FUSION_KNOBS, "candidates": (1, 1000), "centroids": (0, 10_000)},
}
INTEGER_KNOBS = ("depth", "candidates", "centroids")


def options_from_knobs(knobs: Mapping[str, float]) -> dict[str, Any]:
    """Keyword options of :func:`search_hybrid_encoded` from numeric knobs (see ``KNOBS``)."""
    options: dict[str, Any] = dict(knobs)
    for name in INTEGER_KNOBS:
        if name in options:
            if not float(options[name]).is_integer():
                raise ValueError(f"knob {name!r} must be a whole number, got {options[name]!r}")
            options[name] = int(options[name])
    if "alpha" in options:
        options["fusion"] = "linear"
    return options
