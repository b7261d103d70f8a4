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
from lsr.index.segments import Segments
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


def search_dense_modes(view: Segments, queries: HybridQueries, k: int, mode: str, knobs: Mapping[str, Any],
                       threads: int | None = None, allowed: Sequence[np.ndarray | None] | None = None) -> list[FusedHits]:
    """Search encoded queries in a dense mode over every live document; ``knobs`` are the
    mode's (checked here), ``allowed`` each segment's filter (see Segments.search)."""
    spec = DENSE_MODES[mode]
    knobs = {k_.name: k_.default for k_ in spec.knobs} | _linear_if_weighted(spec.check_knobs(knobs))
    k = view.check_k(k)
    check_parts(spec, view.parts, "the index")
    weights = knobs.get("dense_weight")
    weights = weights if isinstance(weights, list) else [weights] * len(queries)
    if len(weights) != len(queries):
        raise ValueError(f"{len(weights)} dense_weight values for {len(queries)} queries")
    qd = view.indexes[0].dense.check_queries(queries.dense) if view.indexes else np.asarray(queries.dense, np.float32)
    faiss_knobs = {name: knobs[name] for name in ("ef_search", "nprobe") if knobs.get(name) is not None}
    flat = all(ix.dense.settings["kind"] == "flat" for ix in view.indexes)
    full_fraction = 1.0 if flat else None  # HNSW/IVF do not tell
    live = [view.live(s, None if allowed is None else allowed[s]) for s in range(len(view.indexes))]
    if mode == "dense":
        return [FusedHits(*ranked, full_fraction) for ranked in _dense_top(view, qd, k, faiss_knobs, live)]
    if queries.sparse is None or len(queries.sparse) != len(qd):
        raise DataError(f"mode {mode!r} needs a sparse encoding of every query")
    depth = max(knobs["depth"], k)
    sparse_hits = view.search(queries.sparse, depth, mode="exact", threads=threads, allowed=allowed)
    if mode == "hybrid":
        dense_lists = _dense_top(view, qd, depth, faiss_knobs, live)
    out = []
    for i, hits in enumerate(sparse_hits):
        sparse = (hits.rows.astype(np.int64), hits.scores)
        if mode == "hybrid":
            dense_list, fraction = dense_lists[i], full_fraction
        else:
            *dense_list, fraction = _selective(view, qd[i], sparse[0][: knobs["candidates"]], depth, knobs["centroids"], live)
        if knobs["fusion"] == "rrf":
            fused = rrf([sparse, tuple(dense_list)], k, rrf_k=knobs["rrf_k"])
        else:
            fused = linear(sparse, tuple(dense_list), k, dense_weight=weights[i], normalization=knobs["normalization"])
        out.append(FusedHits(*fused, fraction))
    return out


def _dense_top(view: Segments, qd: np.ndarray, k: int, faiss_knobs: Mapping[str, int],
               live: Sequence[np.ndarray | None]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each query's dense top k over the segments' live documents, as global rows."""
    found = [ix.dense.search(qd, k, allowed=live[s], **faiss_knobs) for s, ix in enumerate(view.indexes)]
    out = []
    for i in range(len(qd)):
        parts = [_found(rows[i], scores[i]) for scores, rows in found]
        rows = np.concatenate([r + view.offset(s) for s, (r, _) in enumerate(parts)]) if parts else np.zeros(0, np.int64)
        scores = np.concatenate([sc for _, sc in parts]) if parts else np.zeros(0, np.float32)
        order = np.lexsort((rows, -scores))[:k]
        out.append((rows[order], scores[order]))
    return out


def _selective(view: Segments, query: np.ndarray, candidates: np.ndarray, depth: int, centroids: int,
               live: Sequence[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray, float]:
    """Selective dense search in each segment (its clusters holding the global sparse
    candidates, plus the nearest ``centroids``), merged; the fraction of dense vectors scored."""
    rows, scores, scored = [], [], 0.0
    for s, ix in enumerate(view.indexes):
        base, end = view.offset(s), view.offset(s) + ix.num_docs
        mine = candidates[(candidates >= base) & (candidates < end)] - base
        r, sc, fraction = selective_dense(ix.dense, query, mine, depth, candidates=max(1, len(mine)), centroids=centroids,
                                          allowed=live[s])
        rows.append(r + base)
        scores.append(sc)
        scored += fraction * ix.num_docs
    rows_all = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    scores_all = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    order = np.lexsort((rows_all, -scores_all))[:depth]
    return rows_all[order], scores_all[order], scored / max(1, view.num_rows)


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
