"""The dense modes over an index with a dense part (``dense``, ``hybrid``, ``selective``), and
:class:`Fusion` of any number of systems (indexes and modes) by document id.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.errors import DataError
from lsr.index.segments import Segments
from lsr.index.sparse import check_k
from lsr.retrieval.fusion import check_weights, fuse_ids, linear, rrf
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
    knobs, weights = dense_knobs(mode, knobs, len(queries))
    k = view.check_k(k)
    check_parts(DENSE_MODES[mode], view, "the index")
    qd = view.indexes[0].dense.check_queries(queries.dense) if view.indexes else np.asarray(queries.dense, np.float32)
    faiss_knobs = faiss_knobs_of(knobs)
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
        out.append(FusedHits(*fuse(sparse, tuple(dense_list), k, knobs, weights[i]), fraction))
    return out


def dense_knobs(mode: str, knobs: Mapping[str, Any], n_queries: int) -> tuple[dict[str, Any], list[Any]]:
    """A dense mode's knobs checked and completed with defaults, and the ``dense_weight`` of
    each query (one value for all, or a list of one per query)."""
    spec = DENSE_MODES[mode]
    full = {k_.name: k_.default for k_ in spec.knobs} | _linear_if_weighted(spec.check_knobs(knobs))
    weights = full.get("dense_weight")
    weights = weights if isinstance(weights, list) else [weights] * n_queries
    if len(weights) != n_queries:
        raise ValueError(f"{len(weights)} dense_weight values for {n_queries} queries")
    return full, weights


def faiss_knobs_of(knobs: Mapping[str, Any]) -> dict[str, int]:
    """The knobs the faiss search itself takes."""
    return {name: knobs[name] for name in ("ef_search", "nprobe") if knobs.get(name) is not None}


def fuse(sparse: tuple[np.ndarray, np.ndarray], dense: tuple[np.ndarray, np.ndarray], k: int, knobs: Mapping[str, Any],
         dense_weight: float | None) -> tuple[np.ndarray, np.ndarray]:
    """One query's sparse and dense (rows, scores) lists fused as ``knobs`` say."""
    if knobs["fusion"] == "rrf":
        return rrf([sparse, dense], k, rrf_k=knobs["rrf_k"])
    return linear(sparse, dense, k, dense_weight=dense_weight, normalization=knobs["normalization"])


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


# ---- fusion of any number of systems ---------------------------------------------------------
FUSION_KNOBS = ("fusion", "depth", "rrf_k", "normalization")  # a Fusion's settings, named as the hybrid modes' knobs
# Defaults when a fusion names no weights: by kind of system, with linear fusion (min-max). Chosen
# on the offline collections leaving each one out in turn (evaluation/results/encoders/fusion-*.md):
# BM25 0.6 / splade-tiny 0.4 won on every held-out collection but Vaswani (0.5 / 0.5 there).
DEFAULT_FUSION = "linear"
DEFAULT_WEIGHTS = {"bm25": 0.6, "splade": 0.4, "dense": 1.0}


def default_weight(model: str | None, mode: str) -> float:
    """The default weight of a system: dense for the dense mode, else BM25's or a learned sparse model's."""
    from lsr.encoders.bm25 import is_bm25

    return DEFAULT_WEIGHTS["dense" if mode == "dense" else "bm25" if is_bm25(model) else "splade"]


@dataclass(frozen=True)
class FusedSystem:
    """One system of a :class:`Fusion`: a Retriever searched in ``mode`` with its ``knobs`` and
    query options ``query`` (``query_encoder``, ``query_expansion``, ``query_weighting``), and
    its weight in the fusion."""

    retriever: Any
    weight: float = 1.0
    mode: str = "exact"
    knobs: Mapping[str, Any] = field(default_factory=dict)
    query: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""


class Fusion:
    """Fuse the rankings of several systems (BM25, SPLADE, dense, hybrid... each its own index,
    or one index in different modes) by document id: each system's top ``depth`` (at least k),
    fused by weighted reciprocal rank fusion (``fusion="rrf"``, ``rrf_k``) or by weighted
    normalized scores (``"linear"``, the default, ``normalization``: missing documents take a
    list's lowest). :data:`DEFAULT_WEIGHTS` (via :func:`default_weight`) are the validated
    weights for BM25, learned sparse and dense systems.

    Every setting is checked when the fusion is made, before any query is encoded.
    """

    def __init__(self, systems: Sequence[FusedSystem], *, fusion: str = DEFAULT_FUSION, depth: int = 100, rrf_k: float | None = None,
                 normalization: str | None = None) -> None:
        from lsr.retrieval.modes import DEPTH, FUSION, NORMALIZATION, RRF, get_mode

        if not systems:
            raise ValueError("a fusion needs at least one system")
        for s in systems:
            get_mode(s.mode).check_knobs(dict(s.knobs))
        self.systems = list(systems)
        self.weights = check_weights([s.weight for s in systems], len(systems))
        self.options = {"fusion": FUSION.check(fusion), "rrf_k": RRF.check(RRF.default if rrf_k is None else rrf_k),
                        "normalization": NORMALIZATION.check(normalization or NORMALIZATION.default)}
        self.depth = DEPTH.check(depth)

    def encode(self, queries: Sequence[Any]) -> list[Any]:
        """The queries encoded for each system (see Retriever.encode)."""
        return [s.retriever.encode(queries, s.mode, **s.query) for s in self.systems]

    def search_encoded(self, encoded: Sequence[Any], k: int = 10, *, threads: int | None = None) -> list[Any]:
        """Fused top ``k`` per query (SearchResult) from :meth:`encode`'s output."""
        from lsr.retrieval.retriever import SearchResult

        depth = max(self.depth, k)
        per_system = [s.retriever.search_encoded(e, depth, mode=s.mode, threads=threads, **s.knobs) for s, e in zip(self.systems, encoded)]
        out = []
        for i in range(len(per_system[0])):
            ids, scores = fuse_ids([(r[i].ids, r[i].scores) for r in per_system], k, weights=self.weights, **self.options)
            out.append(SearchResult(ids, scores))
        return out

    def search_batch(self, queries: Sequence[Any], k: int = 10, *, threads: int | None = None) -> list[Any]:
        check_k(k, k)  # a bad k fails before any model runs
        return self.search_encoded(self.encode(queries), k, threads=threads) if len(queries) else []

    def search(self, query: Any, k: int = 10) -> Any:
        return self.search_batch([query], k, threads=1)[0]

    def describe(self) -> dict[str, Any]:
        return {**self.options, "depth": self.depth,
                "systems": [{"name": s.name, "mode": s.mode, "weight": w, "knobs": dict(s.knobs), "query": dict(s.query)}
                            for s, w in zip(self.systems, self.weights)]}


def parse_system(text: str) -> dict[str, Any]:
    """``INDEX[:MODE][=WEIGHT]`` (the CLI's ``--fuse``) as ``{"index", "mode", "weight"}``; the
    weight is None when not given (then :func:`default_weight` applies)."""
    where, sep, weight = text.rpartition("=") if "=" in text else (text, "", "")
    index, _, mode = where.rpartition(":") if ":" in where else (where, "", "")
    if not index:
        raise ValueError(f"--fuse {text!r}: expected INDEX[:MODE][=WEIGHT]")
    try:
        value = float(weight) if sep else None
    except ValueError:
        raise ValueError(f"--fuse {text!r}: weight {weight!r} is not a number") from None
    return {"index": index, "mode": mode or "exact", "weight": value}
