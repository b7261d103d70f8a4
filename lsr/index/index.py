"""The Index: build, save, load and search an inverted index of sparse vectors."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numba
import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.errors import DataError
from lsr.index import approx_kernels, bmp_kernels, kernels, storage
from lsr.index.approx import (
    DEFAULT_KNOBS, HEAP_FACTORS, QUERY_CUTS, ApproxIndex, ApproxSettings, TunedPoint, build_approx, check_knobs, mean_cost,
    pick_cheapest, recall_at_k,
)
from lsr.index.blockmax import BlockMax, build_blockmax
from lsr.index.dense import DENSE_MODES, DenseIndex
from lsr.index.build import QUANTIZATIONS, build_postings, quantize
from lsr.index.reorder import reorder_documents

if TYPE_CHECKING:
    from lsr.encoders import SpladeEncoder

Query = Union[str, Mapping[str, float]]
# exact: block-max pruning (safe); exhaustive: score every matching document (the reference);
# approx: clustered lists with block summaries (lsr.index.approx), per-query knobs.
MODES = ("exact", "exhaustive", "approx")


@dataclass(frozen=True)
class SearchResult:
    """Hits of one query, best first."""

    ids: list[str]
    scores: list[float]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Index:
    """An inverted index (term -> docs, quantized impacts) with a forward index (doc -> terms).

    Scores are dot products between the query's float weights and the documents'
    quantized impacts (``impact * scale``); ``lsr info`` reports the largest rounding error.
    """

    doc_ids: list[str]
    vocab: list[str]
    postings_indptr: np.ndarray
    postings_docs: np.ndarray
    postings_impacts: np.ndarray
    forward_indptr: np.ndarray
    forward_terms: np.ndarray
    forward_weights: np.ndarray
    blocks: BlockMax
    manifest: dict[str, Any]
    path: Path | None = None
    approx: ApproxIndex | None = None
    dense: DenseIndex | None = None  # faiss index and clusters for the dense modes (lsr.index.dense)
    _encoder: "SpladeEncoder | None" = field(default=None, repr=False)
    _encoder_map: np.ndarray | None = field(default=None, repr=False)
    _scratch: threading.local = field(default_factory=threading.local, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _positions: dict[str, int] | None = field(default=None, repr=False)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        vectors: SparseVectors,
        doc_ids: Sequence[str],
        *,
        quantization: str = "u16",
        block_size: int = 32,
        reorder: str = "none",
        model: str | None = None,
        encoder_settings: Mapping[str, Any] | None = None,
        approx: bool | ApproxSettings = False,
    ) -> "Index":
        """Index ``vectors`` (one row per document, ids in ``doc_ids``).

        ``model`` names the encoder that produced the vectors, so that text queries against
        the loaded index are encoded the same way. ``block_size`` and ``reorder`` shape the
        block-max layout used by exact search (see :mod:`lsr.index.reorder`). ``approx``
        (True for the default settings) also builds the structure of ``mode="approx"``.
        """
        start = time.perf_counter()
        doc_ids = [str(d) for d in doc_ids]
        if len(doc_ids) != len(vectors):
            raise DataError(f"{len(doc_ids)} document ids for {len(vectors)} vectors")
        if len(set(doc_ids)) != len(doc_ids):
            raise DataError("document ids are not unique")
        if vectors.nnz and (not np.isfinite(vectors.values).all() or vectors.values.min() < 0):
            raise DataError("document weights must be finite and >= 0")
        _check_rows_ascend(vectors)
        vocab = list(vectors.vocab)
        order = reorder_documents(vectors, reorder)
        if reorder != "none":
            vectors = vectors.take(order)
            doc_ids = [doc_ids[i] for i in order]
        postings = build_postings(vectors, len(vocab), quantization)
        blocks = build_blockmax(postings.indptr, postings.docs, postings.impacts, len(doc_ids), block_size)
        lengths = np.diff(vectors.indptr)
        manifest = {
            "lsr_version": _version(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": model,
            "encoder": dict(encoder_settings or {}),
            "settings": {"quantization": quantization, "scale": postings.scale, "block_size": block_size, "reorder": reorder},
            "stats": {
                "num_docs": len(doc_ids),
                "vocab_size": len(vocab),
                "num_postings": int(postings.docs.shape[0]),
                "empty_docs": int((lengths == 0).sum()),
                "mean_terms_per_doc": float(lengths.mean()) if len(lengths) else 0.0,
                "max_quantization_error": postings.max_error,
                "dropped_postings": postings.dropped,
                "build_seconds": round(time.perf_counter() - start, 3),
            },
        }
        index = cls(
            doc_ids=doc_ids,
            vocab=vocab,
            postings_indptr=postings.indptr,
            postings_docs=postings.docs,
            postings_impacts=postings.impacts,
            forward_indptr=vectors.indptr.astype(np.int64),
            forward_terms=vectors.indices.astype(np.int32),
            forward_weights=vectors.values.astype(np.float32),
            blocks=blocks,
            manifest=manifest,
        )
        if approx:
            index.add_approx(approx if isinstance(approx, ApproxSettings) else ApproxSettings())
        return index

    def add_approx(self, settings: ApproxSettings | None = None) -> dict[str, Any]:
        """Build (or rebuild) the approximate-search structure; returns its manifest entry.

        Any tuned default knobs are dropped, as they were measured on the previous structure.
        Call :meth:`save` to persist it.
        """
        settings = settings or ApproxSettings()
        start = time.perf_counter()
        impacts = quantize(np.asarray(self.forward_weights), self.scale, QUANTIZATIONS[self.manifest["settings"]["quantization"]])
        self.approx, stats = build_approx(
            self.forward_indptr, self.forward_terms, self.forward_weights, len(self.vocab), impacts, settings
        )
        self.manifest["approx"] = {
            "settings": asdict(settings),
            "stats": {**stats, "build_seconds": round(time.perf_counter() - start, 3)},
        }
        return self.manifest["approx"]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to ``path`` atomically (see :func:`storage.write_index_dir`)."""
        arrays = {**{name: getattr(self, name) for name in _ARRAYS}, **self.blocks.arrays()}
        if self.approx is not None:
            arrays.update(self.approx.arrays())
        if self.dense is not None:
            arrays.update(self.dense.arrays())
        manifest = {k: v for k, v in self.manifest.items() if k not in ("format", "format_version", "files")}
        self.path = storage.write_index_dir(path, arrays, {"doc_ids": self.doc_ids, "vocab": self.vocab}, manifest)
        self.manifest = storage.read_manifest(self.path)
        return self.path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        mmap: bool = True,
        verify: bool = False,
        encoder: "SpladeEncoder | None" = None,
    ) -> "Index":
        """Open an index directory; arrays are memory-mapped unless ``mmap=False``.

        ``verify`` checks every file against its recorded sha256 (reads the whole index).
        """
        path = Path(path)
        manifest = storage.read_manifest(path)
        if verify:
            storage.verify_files(path, manifest)
        arrays = {name: storage.load_array(path, name, mmap) for name in _ARRAYS}
        block_arrays = {f"bmp_{name}": storage.load_array(path, f"bmp_{name}", mmap) for name in BlockMax.ARRAYS}
        approx = None
        if "approx" in manifest:
            approx = ApproxIndex.from_arrays({name: storage.load_array(path, name, mmap) for name in ApproxIndex.names()})
        dense = DenseIndex.load(manifest["dense"], lambda name: storage.load_array(path, name, mmap)) if "dense" in manifest else None
        index = cls(
            approx=approx,
            dense=dense,
            blocks=BlockMax.from_arrays(manifest["settings"]["block_size"], block_arrays),
            doc_ids=storage.load_json(path, "doc_ids"),
            vocab=storage.load_json(path, "vocab"),
            manifest=manifest,
            path=path,
            **arrays,
        )
        if encoder is not None:
            index.encoder = encoder
        return index

    # ---- facts --------------------------------------------------------------------------
    @property
    def num_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def scale(self) -> float:
        return float(self.manifest["settings"]["scale"])

    def info(self) -> dict[str, Any]:
        """Documents, vocabulary, postings, bytes, model and build settings."""
        files = self.manifest.get("files", {})
        return {
            "path": str(self.path) if self.path else None,
            "format_version": self.manifest.get("format_version", storage.FORMAT_VERSION),
            "model": self.manifest.get("model"),
            "encoder": self.manifest.get("encoder"),
            "settings": self.manifest["settings"],
            "approx": self.manifest.get("approx"),
            **self.manifest["stats"],
            "bytes": sum(f["bytes"] for f in files.values()) if files else _nbytes(self),
            "created": self.manifest.get("created"),
            "dense": self.manifest.get("dense"),
        }

    # ---- queries ------------------------------------------------------------------------
    @property
    def encoder(self) -> "SpladeEncoder":
        """The encoder for text queries: the index's model, loaded on first use."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    model = self.manifest.get("model")
                    if not model:
                        raise DataError("this index was built from vectors without a model: query it with term weights")
                    from lsr.encoders import load_encoder

                    self.encoder = load_encoder(model, vocab=self.vocab, **self.manifest.get("encoder", {}))
        return self._encoder

    @encoder.setter
    def encoder(self, encoder: "SpladeEncoder") -> None:
        """Attach an encoder; its term ids are mapped onto this index's vocabulary once."""
        if list(encoder.vocab) == self.vocab:
            mapping = None
        else:
            position = {t: i for i, t in enumerate(self.vocab)}
            mapping = np.array([position.get(t, -1) for t in encoder.vocab], dtype=np.int32)
        self._encoder_map = mapping
        self._encoder = encoder

    def encode_queries(self, queries: Sequence[Query]) -> SparseVectors:
        """Queries as CSR rows over this index's vocabulary (unknown terms dropped)."""
        texts = [q for q in queries if isinstance(q, str)]
        for q in queries:
            if not isinstance(q, (str, Mapping)):
                raise TypeError(f"a query is a text or a {{term: weight}} mapping, got {type(q).__name__}")
        encoded = iter(self._encode_texts(texts)) if texts else iter(())
        from_dicts = SparseVectors.from_dicts([q for q in queries if not isinstance(q, str)], self.vocab, source="query")
        rows, n_dict = [], 0
        for q in queries:
            if isinstance(q, str):
                rows.append(next(encoded))
            else:
                rows.append(from_dicts.row(n_dict))
                n_dict += 1
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r[0]) for r in rows], out=indptr[1:])
        terms = _concat([r[0] for r in rows], np.int32)
        return SparseVectors(indptr, terms, _concat([r[1] for r in rows], np.float32), self.vocab)

    def _encode_texts(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        vecs = self.encoder.encode_queries(texts)
        rows = []
        for i in range(len(vecs)):
            ids, weights = vecs.row(i)
            if self._encoder_map is not None:
                ids = self._encoder_map[ids]
                keep = ids >= 0
                ids, weights = ids[keep], weights[keep]
            rows.append((ids, weights))
        return rows

    def search(
        self,
        query: Query,
        k: int = 10,
        *,
        mode: str = "exact",
        alpha: float | None = None,
        beta: float = 1.0,
        query_cut: int | None = None,
        heap_factor: float | None = None,
        **fusion: Any,
    ) -> SearchResult:
        """Top-k documents for a text or a ``{term: weight}`` query.

        ``mode="exact"`` uses block-max pruning; ``alpha < 1`` (skip blocks whose bound times
        alpha cannot beat the k-th score) and ``beta < 1`` (keep only that fraction of the
        heaviest query terms) trade exactness for speed, as in the BMP paper.
        ``mode="exhaustive"`` scores every matching document. ``mode="approx"`` walks the
        clustered lists of the ``query_cut`` heaviest query terms and skips blocks whose summary
        score is below ``heap_factor`` x the k-th score (defaults: the tuned or built-in ones).
        ``mode="dense"``, ``"hybrid"`` and ``"selective"`` need a dense part; there ``alpha`` is
        the dense weight of linear fusion, and ``fusion`` options go to
        :func:`lsr.fusion.search_hybrid_encoded`.
        """
        if mode in DENSE_MODES or fusion:
            return self.search_batch([query], k, mode=mode, alpha=alpha, beta=beta, threads=1, **fusion)[0]
        return self.search_encoded(
            self.encode_queries([query]), k, mode=mode, alpha=1.0 if alpha is None else alpha, beta=beta,
            query_cut=query_cut, heap_factor=heap_factor,
        )[0]

    def search_batch(
        self,
        queries: Sequence[Query],
        k: int = 10,
        *,
        mode: str = "exact",
        alpha: float | Sequence[float] | None = None,
        beta: float = 1.0,
        query_cut: int | None = None,
        heap_factor: float | None = None,
        threads: int | None = None,
        **fusion: Any,
    ) -> list[SearchResult]:
        """:meth:`search` for many queries, in parallel over ``threads`` (default: all cores);
        in the dense modes ``alpha`` may give one fusion weight per query."""
        self._check_k(k)
        if not len(queries):
            return []
        if mode in DENSE_MODES:
            from lsr.fusion import search_hybrid

            return search_hybrid(self, queries, k, mode=mode, alpha=alpha, beta=beta, threads=threads, **fusion)
        if fusion:
            raise ValueError(f"mode {mode!r} takes no option {sorted(fusion)} (they belong to the modes {DENSE_MODES})")
        return self.search_encoded(
            self.encode_queries(queries), k, mode=mode, alpha=1.0 if alpha is None else alpha, beta=beta, query_cut=query_cut,
            heap_factor=heap_factor, threads=threads,
        )

    def search_encoded(
        self,
        queries: SparseVectors,
        k: int = 10,
        *,
        mode: str = "exact",
        alpha: float = 1.0,
        beta: float = 1.0,
        query_cut: int | None = None,
        heap_factor: float | None = None,
        threads: int | None = None,
    ) -> list[SearchResult]:
        """Search queries already encoded over this index's vocabulary (see :meth:`encode_queries`).

        One query runs on the calling thread; several run in parallel over ``threads``.
        """
        k = self._check_k(k)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        q = _prepare_queries(queries, beta)
        if mode == "approx":
            docs, scores, counts, _ = self._search_approx(q, k, self.approx_knobs(query_cut, heap_factor), threads)
        elif query_cut is not None or heap_factor is not None:
            raise ValueError(f"query_cut and heap_factor apply to mode='approx', not mode={mode!r}")
        elif len(q) == 1:
            docs, scores = np.empty((1, k), np.int32), np.empty((1, k), np.float32)
            counts = [self._search_one(q.indices, q.values, k, mode, alpha, docs[0], scores[0])]
        else:
            workers = self._workers(threads, len(q))
            if mode == "exhaustive":
                docs, scores, counts = kernels.search_exhaustive_batch(
                    q.indptr, q.indices, q.values, self.postings_indptr, self.postings_docs, self.postings_impacts,
                    self.num_docs, k, workers,
                )
            else:
                docs, scores, counts = bmp_kernels.search_bmp_batch(
                    q.indptr, q.indices, q.values, self.blocks.block_size, self.num_docs, *self.blocks.kernel_args(),
                    k, np.float32(alpha), self.blocks.n_blocks, workers,
                )
        return [self._result(docs[i, : counts[i]], scores[i, : counts[i]]) for i in range(len(q))]

    def _search_one(self, terms, weights, k, mode, alpha, out_docs, out_scores) -> int:
        s = self._thread_scratch()
        if mode == "exhaustive":
            return kernels.search_exhaustive(
                terms, weights, self.postings_indptr, self.postings_docs, self.postings_impacts,
                k, s.acc, s.touched, out_docs, out_scores,
            )
        return bmp_kernels.search_bmp(
            terms, weights, self.blocks.block_size, self.num_docs, *self.blocks.kernel_args(),
            k, np.float32(alpha), s.ub, out_docs, out_scores,
        )

    # ---- approximate search -------------------------------------------------------------
    def approx_knobs(self, query_cut: int | None = None, heap_factor: float | None = None) -> dict[str, float]:
        """The knobs a ``mode="approx"`` search uses: those given, else the tuned defaults
        stored in the manifest (see :meth:`tune`), else the built-in defaults."""
        if self.approx is None:
            raise DataError("this index has no approximate-search structure: build it with approx=True "
                            "(`lsr index --approx`) or add it with `lsr tune`")
        given = {n: v for n, v in (("query_cut", query_cut), ("heap_factor", heap_factor)) if v is not None}
        tuned = self.manifest["approx"].get("tuned", {}).get("knobs", {})
        return {**DEFAULT_KNOBS, **tuned, **check_knobs(given)}

    def _search_approx(self, q: SparseVectors, k: int, knobs: Mapping[str, float], threads: int | None = None):
        """(docs, scores, counts, work stats) of prepared queries; one query on this thread."""
        a = self.approx
        args = (int(knobs["query_cut"]), np.float32(knobs["heap_factor"]), k, *a.kernel_args(),
                self.forward_indptr, self.forward_terms, a.fwd_impacts)
        if len(q) != 1:
            return approx_kernels.search_approx_batch(q.indptr, q.indices, q.values, *args, self._workers(threads, len(q)))
        s = self._thread_scratch()
        if getattr(s, "qdense", None) is None:
            s.qdense = np.zeros(len(self.vocab), dtype=np.float32)
            s.visited = np.zeros(self.num_docs, dtype=np.uint8)
        docs, scores = np.empty((1, k), np.int32), np.empty((1, k), np.float32)
        stats = np.zeros(approx_kernels.N_STATS, dtype=np.int64)
        n = approx_kernels.search_approx(q.indices, q.values, *args, s.qdense, s.visited, s.touched, docs[0], scores[0], stats)
        return docs, scores, [n], stats

    def approx_work(self, queries: SparseVectors, k: int = 10, **knobs: float) -> dict[str, float]:
        """Mean work per query of an approximate search (lists, summary entries, blocks scored
        and skipped, documents scored, forward entries read): where its time goes."""
        q = _prepare_queries(queries, 1.0)
        *_, stats = self._search_approx(q, self._check_k(k), self.approx_knobs(**knobs), threads=1)
        names = ("lists", "summary_entries", "blocks_scored", "blocks_skipped", "docs_scored", "doc_entries")
        return {name: float(stats[i]) / max(1, len(q)) for i, name in enumerate(names)}

    def tune(
        self,
        queries: SparseVectors,
        target_recall: float = 0.95,
        k: int = 10,
        query_cuts: Sequence[int] = QUERY_CUTS,
        heap_factors: Sequence[float] = HEAP_FACTORS,
    ) -> TunedPoint:
        """Pick the cheapest approx knobs reaching ``target_recall`` (recall@k against the
        exhaustive top-k of ``queries``) and store them in the manifest as the defaults.

        Cost is the work counted by the kernel (entries read per query), not wall time, so the
        choice is deterministic and does not depend on machine load. Call :meth:`save` to
        persist it. Returns the chosen point (the most accurate one if none reaches the target).
        """
        if not 0.0 < target_recall <= 1.0:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall!r}")
        self.approx_knobs()  # the structure must exist
        k = self._check_k(k)
        q = _prepare_queries(queries, 1.0)
        truth = self.search_encoded(q, k, mode="exhaustive")
        truth_docs = [set(r.ids) for r in truth]
        points = []
        for cut in query_cuts:
            for hf in heap_factors:
                docs, _, counts, stats = self._search_approx(q, k, check_knobs({"query_cut": cut, "heap_factor": hf}))
                found = [[self.doc_ids[d] for d in docs[i, : counts[i]]] for i in range(len(q))]
                points.append(TunedPoint(cut, hf, recall_at_k(found, truth_docs), mean_cost(stats, len(q))))
        best = pick_cheapest(points, target_recall)
        self.manifest["approx"]["tuned"] = {
            "knobs": best.knobs(), "target_recall": target_recall, "k": k, "queries": len(q),
            "recall": round(best.recall, 4), "cost": round(best.cost, 1),
        }
        return best

    def explain(self, query: Query, doc_id: str) -> list[dict[str, Any]]:
        """Per matched term: query weight, the document's stored weight, and the contribution."""
        try:
            d = self._doc_position()[doc_id]
        except KeyError:
            raise DataError(f"unknown document id {doc_id!r}") from None
        q = self.encode_queries([query])
        out = []
        for t, qw in zip(q.indices, q.values):
            p_lo, p_hi = self.postings_indptr[t], self.postings_indptr[t + 1]
            j = p_lo + np.searchsorted(self.postings_docs[p_lo:p_hi], d)
            if j < p_hi and self.postings_docs[j] == d:
                dw = float(self.postings_impacts[j]) * self.scale
                out.append({"term": self.vocab[t], "query_weight": float(qw), "doc_weight": dw, "contribution": float(qw) * dw})
        return sorted(out, key=lambda e: -e["contribution"])

    # ---- helpers ------------------------------------------------------------------------
    def _check_k(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        return int(min(k, max(self.num_docs, 1)))

    @staticmethod
    def _workers(threads: int | None, n_queries: int) -> int:
        return max(1, min(threads or numba.config.NUMBA_NUM_THREADS, n_queries))

    def _thread_scratch(self) -> threading.local:
        """Per-thread accumulators reused across queries (the kernels leave them zeroed)."""
        s = self._scratch
        if getattr(s, "acc", None) is None:
            s.acc = np.zeros(self.num_docs, dtype=np.float32)
            s.touched = np.empty(self.num_docs, dtype=np.int32)
            s.ub = np.zeros(self.blocks.n_blocks, dtype=np.float32)
        return s

    def _doc_position(self) -> dict[str, int]:
        if self._positions is None:
            self._positions = {d: i for i, d in enumerate(self.doc_ids)}
        return self._positions

    def _result(self, docs: np.ndarray, scores: np.ndarray) -> SearchResult:
        return SearchResult([self.doc_ids[d] for d in docs], (scores.astype(np.float64) * self.scale).tolist())


_ARRAYS = (
    "postings_indptr",
    "postings_docs",
    "postings_impacts",
    "forward_indptr",
    "forward_terms",
    "forward_weights",
)


def _nbytes(index: Index) -> int:
    return sum(getattr(index, name).nbytes for name in _ARRAYS) + index.blocks.nbytes + (index.approx.nbytes if index.approx else 0)


def _check_rows_ascend(vectors: SparseVectors) -> None:
    """Term ids strictly ascend within each row: a repeated term would be scored twice by the
    postings but bounded once by the block maxima, breaking exact search."""
    steps = np.diff(vectors.indices.astype(np.int64))
    inside = np.ones(steps.shape[0], dtype=bool)
    starts = vectors.indptr[1:-1]
    inside[starts[(starts > 0) & (starts <= steps.shape[0])] - 1] = False  # a step across rows
    bad = np.flatnonzero(inside & (steps <= 0))
    if bad.size:
        row = int(np.searchsorted(vectors.indptr, bad[0], side="right") - 1)
        term = vectors.vocab[int(vectors.indices[bad[0] + 1])]
        raise DataError(f"document {row}: term ids must strictly ascend within a row (term {term!r} repeats or is out of order)")


def _prepare_queries(queries: SparseVectors, beta: float) -> SparseVectors:
    """Rows with positive weights only, terms ascending (the kernels rely on it), and with
    ``beta < 1`` only the heaviest ``ceil(beta * n)`` terms of each query."""
    rows_t, rows_w = [], []
    for i in range(len(queries)):
        terms, weights = queries.row(i)
        keep = weights > 0
        terms, weights = terms[keep], weights[keep]
        if beta < 1.0 and len(terms):
            top = np.argsort(-weights, kind="stable")[: int(np.ceil(beta * len(terms)))]
            terms, weights = terms[top], weights[top]
        order = np.argsort(terms, kind="stable")
        rows_t.append(terms[order])
        rows_w.append(weights[order])
    indptr = np.zeros(len(rows_t) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in rows_t], out=indptr[1:])
    return SparseVectors(indptr, _concat(rows_t, np.int32), _concat(rows_w, np.float32), queries.vocab)


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _version() -> str:
    from lsr import __version__

    return __version__
