"""The dense modes over an index with a dense part: ``dense``, ``hybrid`` and ``selective``.

- ``dense``: the top k of the faiss index alone.
- ``hybrid``: the exact sparse top ``depth`` and the dense top ``depth``, fused (RRF, or
  ``fusion="linear"`` with weight ``dense_weight`` on the dense side).
- ``selective``: as ``hybrid``, but the dense side scores only the clusters chosen from the
  sparse candidates and the query (:mod:`lsr.retrieval.selective`); each result reports the
  fraction of the dense vectors it scored.

Everything here works on internal rows; the retriever maps them to ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.errors import DataError
from lsr.index import SparseIndex
from lsr.retrieval.fusion import linear, rrf
from lsr.retrieval.modes import DENSE_MODES, check_parts
from lsr.retrieval.selective import selective_dense


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


@dataclass(frozen=True)
class FusedHits:
    """One query's rows and scores, best first, and the fraction of the dense vectors scored to
    find them (None when an approximate faiss index (HNSW, IVF) did the dense search)."""

    rows: np.ndarray
    scores: np.ndarray
    dense_fraction: float | None


def search_dense_modes(index: SparseIndex, queries: HybridQueries, k: int, mode: str, knobs: Mapping[str, Any],
                       threads: int | None = None) -> list[FusedHits]:
    """Search encoded queries in a dense mode; ``knobs`` are the mode's (checked here)."""
    spec = DENSE_MODES[mode]
    knobs = {k_.name: k_.default for k_ in spec.knobs} | _linear_if_weighted(spec.check_knobs(knobs))
    k = index.check_k(k)
    check_parts(spec, index.parts, f"the index {index.path or ''}".strip())
    dense = index.dense
    weights = knobs.get("dense_weight")
    weights = weights if isinstance(weights, list) else [weights] * len(queries)
    if len(weights) != len(queries):
        raise ValueError(f"{len(weights)} dense_weight values for {len(queries)} queries")
    qd = dense.check_queries(queries.dense)
    faiss_knobs = {name: knobs[name] for name in ("ef_search", "nprobe") if knobs.get(name) is not None}
    full_fraction = 1.0 if dense.settings["kind"] == "flat" else None  # HNSW/IVF do not tell
    if mode == "dense":
        scores, rows = dense.search(qd, k, **faiss_knobs)
        return [FusedHits(*_found(rows[i], scores[i]), full_fraction) for i in range(len(qd))]
    if queries.sparse is None or len(queries.sparse) != len(qd):
        raise DataError(f"mode {mode!r} needs a sparse encoding of every query")
    depth = max(knobs["depth"], k)
    sparse_hits = index.search(queries.sparse, depth, mode="exact", threads=threads)
    if mode == "hybrid":
        d_scores, d_rows = dense.search(qd, depth, **faiss_knobs)
    out = []
    for i, hits in enumerate(sparse_hits):
        sparse = (hits.rows.astype(np.int64), hits.scores)
        if mode == "hybrid":
            dense_list, fraction = _found(d_rows[i], d_scores[i]), full_fraction
        else:
            rows, scores, fraction = selective_dense(dense, qd[i], sparse[0], depth, candidates=knobs["candidates"],
                                                     centroids=knobs["centroids"])
            dense_list = (rows, scores)
        if knobs["fusion"] == "rrf":
            fused = rrf([sparse, dense_list], k, rrf_k=knobs["rrf_k"])
        else:
            fused = linear(sparse, dense_list, k, dense_weight=weights[i], normalization=knobs["normalization"])
        out.append(FusedHits(*fused, fraction))
    return out


def _linear_if_weighted(knobs: dict[str, Any]) -> dict[str, Any]:
    """Giving ``dense_weight`` selects linear fusion; RRF takes no weight."""
    if "dense_weight" in knobs:
        if knobs.setdefault("fusion", "linear") != "linear":
            raise ValueError("dense_weight weighs linear fusion; RRF takes none (use fusion='linear')")
    return knobs


def _found(rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop faiss's -1 padding (fewer hits than asked)."""
    keep = rows >= 0
    return rows[keep].astype(np.int64), scores[keep]
