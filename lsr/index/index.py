"""The Index: build, save, load and search an inverted index of sparse vectors."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numba
import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.errors import DataError
from lsr.index import kernels, storage
from lsr.index.build import build_postings

if TYPE_CHECKING:
    from lsr.encoders import SpladeEncoder

Query = Union[str, Mapping[str, float]]


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
    manifest: dict[str, Any]
    path: Path | None = None
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
        model: str | None = None,
        encoder_settings: Mapping[str, Any] | None = None,
    ) -> "Index":
        """Index ``vectors`` (one row per document, ids in ``doc_ids``).

        ``model`` names the encoder that produced the vectors, so that text queries against
        the loaded index are encoded the same way.
        """
        start = time.perf_counter()
        doc_ids = [str(d) for d in doc_ids]
        if len(doc_ids) != len(vectors):
            raise DataError(f"{len(doc_ids)} document ids for {len(vectors)} vectors")
        if len(set(doc_ids)) != len(doc_ids):
            raise DataError("document ids are not unique")
        if vectors.nnz and (not np.isfinite(vectors.values).all() or vectors.values.min() < 0):
            raise DataError("document weights must be finite and >= 0")
        vocab = list(vectors.vocab)
        postings = build_postings(vectors, len(vocab), quantization)
        lengths = np.diff(vectors.indptr)
        manifest = {
            "lsr_version": _version(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": model,
            "encoder": dict(encoder_settings or {}),
            "settings": {"quantization": quantization, "scale": postings.scale},
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
        return cls(
            doc_ids=doc_ids,
            vocab=vocab,
            postings_indptr=postings.indptr,
            postings_docs=postings.docs,
            postings_impacts=postings.impacts,
            forward_indptr=vectors.indptr.astype(np.int64),
            forward_terms=vectors.indices.astype(np.int32),
            forward_weights=vectors.values.astype(np.float32),
            manifest=manifest,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to ``path`` atomically (see :func:`storage.write_index_dir`)."""
        arrays = {name: getattr(self, name) for name in _ARRAYS}
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
        index = cls(
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
            **self.manifest["stats"],
            "bytes": sum(f["bytes"] for f in files.values()) if files else _nbytes(self),
            "created": self.manifest.get("created"),
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
                    from lsr.encoders import SpladeEncoder

                    settings = {k: v for k, v in self.manifest.get("encoder", {}).items() if k in _ENCODER_KEYS}
                    self.encoder = SpladeEncoder(model, **settings)
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
        terms = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int32)
        weights = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
        return SparseVectors(indptr, terms.astype(np.int32), weights.astype(np.float32), self.vocab)

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

    def search(self, query: Query, k: int = 10) -> SearchResult:
        """Exact top-k documents for a text or a ``{term: weight}`` query."""
        k = self._check_k(k)
        q = self.encode_queries([query])
        acc, touched = self._thread_scratch()
        out_docs = np.empty(k, dtype=np.int32)
        out_scores = np.empty(k, dtype=np.float32)
        n = kernels.search_exhaustive(
            q.indices, q.values, self.postings_indptr, self.postings_docs, self.postings_impacts,
            k, acc, touched, out_docs, out_scores,
        )
        return self._result(out_docs[:n], out_scores[:n])

    def search_batch(self, queries: Sequence[Query], k: int = 10, threads: int | None = None) -> list[SearchResult]:
        """Exact top-k for many queries, in parallel over ``threads`` (default: all cores)."""
        k = self._check_k(k)
        if not len(queries):
            return []
        q = self.encode_queries(queries)
        workers = max(1, min(threads or numba.config.NUMBA_NUM_THREADS, len(queries)))
        docs, scores, counts = kernels.search_exhaustive_batch(
            q.indptr, q.indices, q.values, self.postings_indptr, self.postings_docs, self.postings_impacts,
            self.num_docs, k, workers,
        )
        return [self._result(docs[i, : counts[i]], scores[i, : counts[i]]) for i in range(len(queries))]

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

    def _thread_scratch(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-thread accumulator and touched list, reused across queries (kernels leave acc zeroed)."""
        s = self._scratch
        if getattr(s, "acc", None) is None or s.acc.shape[0] != self.num_docs:
            s.acc = np.zeros(self.num_docs, dtype=np.float32)
            s.touched = np.empty(self.num_docs, dtype=np.int32)
        return s.acc, s.touched

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
_ENCODER_KEYS = ("max_length", "query_max_length", "batch_size", "top_k")


def _nbytes(index: Index) -> int:
    return sum(getattr(index, name).nbytes for name in _ARRAYS)


def _version() -> str:
    from lsr import __version__

    return __version__
