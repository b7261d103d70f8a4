"""SparseIndex: the numeric inverted index of one collection, arrays and kernels only.

It knows term ids and document rows, never text: queries arrive as :class:`SparseVectors`
over its vocabulary and hits leave as internal rows with float scores. Encoding text, mapping
rows to string ids, explaining and fusing with a dense ranking are the retriever's
(:mod:`lsr.retrieval`), the way Seismic keeps a numeric ``InvertedIndex`` under the wrapper that
maps ids and tokens.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.errors import DataError
from lsr.index import storage
from lsr.index.approx import (HEAP_FACTORS, LAYOUT, QUERY_CUTS, ApproxIndex, ApproxScratch, ApproxSearcher, ApproxSettings, TunedPoint,
                              build_approx, mean_cost, pick_cheapest, recall_at_k)
from lsr.index.blockmax import BlockMax, build_blockmax
from lsr.index.build import QUANTIZATIONS, build_postings, check_rows, id_dtype, posting_weights, quantize
from lsr.index.dense import DenseIndex
from lsr.index.kernels import approx_search, exact, forward, transpose
from lsr.index.kernels.query import BAD_SUM, BAD_TERM, BAD_WEIGHT, query_error, weight_limit
from lsr.index.modes import APPROX, SPARSE_MODES
from lsr.index.planner import CODES, STRATEGIES, plan
from lsr.index.reorder import index_rows, reorder_documents
from lsr.index.validate import Checker
from lsr.util import offsets
from lsr.version import __version__

_ARRAYS = ("postings_indptr", "postings_docs", "postings_impacts", "postings_weights", "forward_indptr", "forward_terms",
           "forward_weights")
# An approx search whose filter keeps fewer than this fraction of the documents scores those
# documents exactly from the forward index: cheaper than walking lists whose blocks the filter
# empties, and exact (see evaluation/results/collection for the measured crossover).
SELECTIVE_FILTER = 0.02
_ALL = np.zeros(0, dtype=np.uint8)  # the kernels' "no mask"
WORK_STATS = ("lists", "summary_entries", "blocks_scored", "blocks_skipped", "docs_scored", "doc_entries")


@dataclass(frozen=True)
class Hits:
    """One query's hits, best first: internal document rows and their float scores."""

    rows: np.ndarray  # int32
    scores: np.ndarray  # float64
    strategy: str | None = None  # how exact search found them (lsr.index.planner), None for approx

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class SparseIndex:
    """Term -> docs postings with quantized impacts and float weights, a forward index (doc ->
    terms, float weights), the block-max layout of exact search, and optionally the
    approximate-search structure and a dense part, in one directory.

    Exact scores are dot products of the query's float weights with the documents' float
    weights: exhaustive search adds up the postings' float weights, pruned strategies let
    quantized impacts choose candidates and rescore them from the forward index
    (:mod:`lsr.index.kernels.candidates`). Approx scores are in impacts (``impact * scale``);
    ``info()`` reports the largest rounding error.
    """

    doc_ids: list[str]
    vocab: list[str]
    postings_indptr: np.ndarray
    postings_docs: np.ndarray
    postings_impacts: np.ndarray
    postings_weights: np.ndarray
    forward_indptr: np.ndarray
    forward_terms: np.ndarray
    forward_weights: np.ndarray
    blocks: BlockMax
    manifest: dict[str, Any]
    path: Path | None = None
    approx: ApproxIndex | None = None
    dense: DenseIndex | None = None
    _scratch: threading.local = field(default_factory=threading.local, repr=False)
    _positions: dict[str, int] | None = field(default=None, repr=False)
    _same_vocab: dict[int, Sequence[str]] = field(default_factory=dict, repr=False)
    _exact_args: tuple | None = field(default=None, repr=False)

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
        max_weight: float | None = None,
        threads: int | None = None,
    ) -> "SparseIndex":
        """Index ``vectors`` (one row per document, ids in ``doc_ids``).

        ``model`` and ``encoder_settings`` name the query encoder that matches the vectors;
        they are recorded for the retriever, which loads it. ``block_size`` and ``reorder``
        shape the block-max layout (see :mod:`lsr.index.reorder`); ``approx`` (True for the
        default settings) also builds the structure of ``mode="approx"``; ``max_weight`` fixes
        the quantization step (see :func:`lsr.index.build.build_postings`). Postings and the
        approximate structure are built on ``threads`` threads (default: every core); the index
        is the same for any number.
        """
        start = time.perf_counter()
        doc_ids = [str(d) for d in doc_ids]
        if len(doc_ids) != len(vectors):
            raise DataError(f"{len(doc_ids)} document ids for {len(vectors)} vectors")
        if len(set(doc_ids)) != len(doc_ids):
            raise DataError("document ids are not unique")
        if vectors.nnz and (not np.isfinite(vectors.values).all() or vectors.values.min() < 0):
            raise DataError("document weights must be finite and >= 0")
        check_rows(vectors.indptr, vectors.indices, len(vectors.values), len(vectors.vocab))
        _check_rows_ascend(vectors)
        vocab = list(vectors.vocab)
        order = reorder_documents(vectors, reorder, block_size)
        vectors = index_rows(vectors, order, threads)
        if reorder != "none":
            doc_ids = [doc_ids[i] for i in order]
        postings = build_postings(vectors, len(vocab), quantization, max_weight, threads)
        fwd_impacts = quantize(vectors.values, postings.scale, QUANTIZATIONS[quantization])
        blocks = build_blockmax(postings.indptr, postings.docs, postings.impacts, vectors.indptr, vectors.indices, fwd_impacts,
                                block_size)
        lengths = np.diff(vectors.indptr)
        manifest = {
            "lsr_version": __version__,
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
                "raised_postings": postings.raised,
                "build_seconds": round(time.perf_counter() - start, 3),
            },
        }
        index = cls(
            doc_ids=doc_ids,
            vocab=vocab,
            postings_indptr=postings.indptr,
            postings_docs=postings.docs,
            postings_impacts=postings.impacts,
            postings_weights=postings.weights,
            forward_indptr=vectors.indptr,
            forward_terms=vectors.indices,
            forward_weights=vectors.values,
            blocks=blocks,
            manifest=manifest,
        )
        if approx:
            index._add_approx(approx if isinstance(approx, ApproxSettings) else ApproxSettings(), fwd_impacts, threads)
        return index

    def add_approx(self, settings: ApproxSettings | None = None, threads: int | None = None) -> dict[str, Any]:
        """Build (or rebuild) the approximate-search structure on ``threads`` threads (default:
        every core); returns its manifest entry.

        Tuned default knobs are dropped, as they were measured on the previous structure.
        Call :meth:`save` to persist it.
        """
        impacts = quantize(np.asarray(self.forward_weights), self.scale, QUANTIZATIONS[self.manifest["settings"]["quantization"]])
        return self._add_approx(settings or ApproxSettings(), impacts, threads)

    def _add_approx(self, settings: ApproxSettings, impacts: np.ndarray, threads: int | None) -> dict[str, Any]:
        """add_approx, given the forward weights' impacts (a build has them already)."""
        start = time.perf_counter()
        no_zeros = self.postings_docs.shape[0] == self.forward_terms.shape[0]  # then the postings are every entry's
        self.approx, stats = build_approx(
            self.forward_indptr, self.forward_terms, self.forward_weights, len(self.vocab), impacts, settings,
            (self.postings_indptr, self.postings_docs, self.postings_weights) if no_zeros else None, threads,
        )
        self._scratch = threading.local()  # cached searchers hold the old structure's arrays
        self.manifest["approx"] = {"layout": LAYOUT, "settings": asdict(settings),
                                   "stats": {**stats, "build_seconds": round(time.perf_counter() - start, 3)}}
        return self.manifest["approx"]

    def save(self, path: str | os.PathLike, threads: int | None = None) -> Path:
        """Write the index to ``path`` atomically (see :func:`storage.write_index_dir`), its files
        on ``threads`` threads (default: every core)."""
        arrays = {**{name: getattr(self, name) for name in _ARRAYS}, **self.blocks.arrays()}
        for part in (self.approx, self.dense):
            if part is not None:
                arrays.update(part.arrays())
        manifest = {k: v for k, v in self.manifest.items() if k not in ("format", "format_version", "files")}
        self.path = storage.write_index_dir(path, arrays, {"doc_ids": self.doc_ids, "vocab": self.vocab}, manifest, threads)
        self.manifest = storage.read_manifest(self.path)
        return self.path

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = True, verify: bool = False) -> "SparseIndex":
        """Open an index directory; arrays are memory-mapped unless ``mmap=False``.

        ``verify`` checks every file against its recorded sha256 (reads the whole index).
        """
        path = Path(path)
        manifest = storage.read_manifest(path)
        if verify:
            storage.verify_files(path, manifest)

        def load(name: str) -> np.ndarray:
            return storage.load_array(path, name, mmap)

        base = {name: load(name) for name in _ARRAYS if name != "postings_weights"}
        vocab = storage.load_json(path, "vocab")
        # an index written before postings carried float weights: they are the forward weights, transposed
        base["postings_weights"] = (load("postings_weights") if "postings_weights.npy" in manifest.get("files", {}) else
                                    posting_weights(base["forward_indptr"], base["forward_terms"], base["forward_weights"], len(vocab)))
        settings = manifest.get("settings")
        quantization = settings.get("quantization") if isinstance(settings, dict) else None
        impact_dtype = QUANTIZATIONS.get(quantization) if isinstance(quantization, str) else None
        approx = (ApproxIndex.load(manifest["approx"], load, base["forward_indptr"], base["forward_terms"], len(vocab), impact_dtype)
                  if "approx" in manifest else None)
        index = cls(
            approx=approx,
            dense=DenseIndex.load(manifest["dense"], load) if "dense" in manifest else None,
            blocks=BlockMax.from_arrays(manifest["settings"]["block_size"], {f"bmp_{n}": load(f"bmp_{n}") for n in BlockMax.ARRAYS}),
            doc_ids=storage.load_json(path, "doc_ids"),
            vocab=vocab,
            manifest=manifest,
            path=path,
            **base,
        )
        index.validate()
        return index

    def validate(self) -> None:
        """Refuse a damaged index with one clear error (lsr.index.validate): lengths, dtypes,
        monotone pointers and ids within bounds of every array, and the manifest's facts."""
        c = Checker(self.path or "the index")
        n, vocab_size = len(self.doc_ids), len(self.vocab)
        stats, settings = self.manifest.get("stats"), self.manifest.get("settings")
        if not isinstance(stats, dict) or not isinstance(settings, dict) or settings.get("quantization") not in QUANTIZATIONS:
            c.fail("the manifest lacks its stats or settings")
        if stats.get("num_docs") != n or stats.get("vocab_size") != vocab_size:
            c.fail(f"doc_ids.json and vocab.json hold {n} ids and {vocab_size} terms, the manifest says "
                   f"{stats.get('num_docs')} and {stats.get('vocab_size')}")
        if not all(isinstance(d, str) for d in self.doc_ids) or len(set(self.doc_ids)) != n:
            c.fail("doc_ids.json does not hold unique string ids")
        if not all(isinstance(t, str) for t in self.vocab):
            c.fail("vocab.json does not hold strings")
        scale = settings.get("scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not np.isfinite(scale) or scale <= 0:
            c.fail(f"the manifest's scale {scale!r} is not a positive number")
        dtype = QUANTIZATIONS[settings["quantization"]]
        c.pointers("postings_indptr", self.postings_indptr, vocab_size, self.postings_docs.shape[0])
        c.array("postings_docs", self.postings_docs, (np.int32,))
        c.ids("postings_docs", self.postings_docs, n)
        c.ascending_within("postings_docs", self.postings_docs, self.postings_indptr)
        c.array("postings_impacts", self.postings_impacts, (dtype,), self.postings_docs.shape[0])
        c.array("postings_weights", self.postings_weights, (np.float32,), self.postings_docs.shape[0])
        c.finite("postings_weights", self.postings_weights)
        c.pointers("forward_indptr", self.forward_indptr, n, self.forward_terms.shape[0])
        c.array("forward_terms", self.forward_terms, (np.int32, id_dtype(vocab_size)))
        c.ids("forward_terms", self.forward_terms, vocab_size)
        c.ascending_within("forward_terms", self.forward_terms, self.forward_indptr)
        c.array("forward_weights", self.forward_weights, (np.float32,), self.forward_terms.shape[0])
        c.finite("forward_weights", self.forward_weights)
        self.blocks.validate(c, n, vocab_size, dtype)
        if self.approx is not None:
            self.approx.validate(c, n, vocab_size, self.forward_terms.shape[0], dtype)
        if self.dense is not None:
            self.dense.validate(c, n)

    # ---- facts --------------------------------------------------------------------------
    @property
    def num_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def scale(self) -> float:
        return float(self.manifest["settings"]["scale"])

    @property
    def weight_limit(self) -> float:
        """The largest sum of a query's positive weights this index searches (see :func:`weight_limit`)."""
        return weight_limit(np.iinfo(self.postings_impacts.dtype).max)

    @property
    def parts(self) -> frozenset[str]:
        """Optional structures present (``"approx"``, ``"dense"``): what a mode may need."""
        return frozenset(name for name, part in (("approx", self.approx), ("dense", self.dense)) if part is not None)

    def info(self) -> dict[str, Any]:
        """Documents, vocabulary, postings, bytes, model and build settings."""
        files = self.manifest.get("files", {})
        nbytes = sum(getattr(self, n).nbytes for n in _ARRAYS) + self.blocks.nbytes + (self.approx.nbytes if self.approx else 0)
        return {
            "path": str(self.path) if self.path else None,
            "format_version": self.manifest.get("format_version", storage.FORMAT_VERSION),
            "model": self.manifest.get("model"),
            "encoder": self.manifest.get("encoder"),
            "settings": self.manifest["settings"],
            "approx": self.manifest.get("approx"),
            **self.manifest["stats"],
            "bytes": sum(f["bytes"] for f in files.values()) if files else nbytes,
            "created": self.manifest.get("created"),
            "dense": self.manifest.get("dense"),
        }

    def positions(self) -> dict[str, int]:
        """Document id -> internal row (built on first use)."""
        if self._positions is None:
            self._positions = {d: i for i, d in enumerate(self.doc_ids)}
        return self._positions

    def check_k(self, k: int) -> int:
        return check_k(k, self.num_docs)

    # ---- search -------------------------------------------------------------------------
    def prepare(self, queries: SparseVectors, beta: float = 1.0) -> SparseVectors:
        """Queries as the kernels take them: over this vocabulary (checked), positive weights,
        each term once (repeats summed, in every mode alike), terms ascending, and with
        ``beta < 1`` only the heaviest ``ceil(beta * n)`` terms of each query."""
        check_vocab(self.vocab, queries.vocab, self._same_vocab)
        n = len(queries)
        terms = np.asarray(queries.indices)
        weights = np.asarray(queries.values, dtype=np.float32)
        vocab_size, limit = len(self.vocab), self.weight_limit
        if terms.size and (int(terms.min()) < 0 or int(terms.max()) >= vocab_size):
            raise query_error(BAD_TERM, terms, weights, vocab_size, limit)
        if not np.isfinite(weights).all():
            raise query_error(BAD_WEIGHT, terms, weights, vocab_size, limit)
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(np.asarray(queries.indptr)))
        total = np.bincount(rows, np.maximum(weights, 0).astype(np.float64), minlength=n)
        if total.size and total.max() > limit:
            worst = int(np.argmax(total))
            raise query_error(BAD_SUM, terms, queries.row(worst)[1], vocab_size, limit)
        keep = weights > 0
        rows, terms, weights = rows[keep], terms[keep], weights[keep]
        order = np.lexsort((terms, rows))
        rows, terms, weights = rows[order], terms[order].astype(np.int32), weights[order]
        if terms.size > 1:
            first = np.ones(terms.size, dtype=bool)
            first[1:] = (rows[1:] != rows[:-1]) | (terms[1:] != terms[:-1])
            if not first.all():
                starts = np.flatnonzero(first)
                rows, terms, weights = rows[starts], terms[starts], np.add.reduceat(weights, starts)
        indptr = offsets(np.bincount(rows, minlength=n))
        if beta < 1.0:
            kept = []
            for i in range(n):
                lo, hi = indptr[i], indptr[i + 1]
                top = np.argsort(-weights[lo:hi], kind="stable")[: int(np.ceil(beta * (hi - lo)))]
                kept.append(lo + np.sort(top))
            sel = np.concatenate(kept) if kept else np.zeros(0, np.int64)
            terms, weights, indptr = terms[sel], weights[sel], offsets([len(s) for s in kept])
        return SparseVectors(indptr, terms, weights, self.vocab)

    def search(self, queries: SparseVectors, k: int = 10, *, mode: str = "exact", threads: int | None = None,
               allowed: np.ndarray | None = None, **knobs: Any) -> list[Hits]:
        """Top-k rows of each query in a sparse mode (see :mod:`lsr.index.modes` for the knobs).

        ``allowed`` (bool or uint8, one per document) restricts the hits to those documents
        (deletions, filters) inside the kernels, so k allowed hits come back when there are k.
        An approx search whose allowed documents are fewer than :data:`SELECTIVE_FILTER` of the
        collection scores them exactly instead (as OpenSearch does for selective filters).
        One query runs on the calling thread; several run in parallel over ``threads``
        (default: all cores).
        """
        spec = SPARSE_MODES.get(mode)
        if spec is None:
            raise ValueError(f"mode must be one of {', '.join(SPARSE_MODES)} here, got {mode!r}")
        knobs = spec.check_knobs(knobs)
        k = self.check_k(k)
        mask = self._mask(allowed)
        if mode == "approx" and len(queries) == 1 and not mask.shape[0]:  # the thin path: prepared inside the kernel
            check_vocab(self.vocab, queries.vocab, self._same_vocab)
            rows, scores = self._approx_scratch_searcher(k, self.approx_knobs(**knobs)).search(*queries.row(0))
            return [Hits(rows, scores)]
        if mode != "approx" and len(queries) == 1:  # the thin path, as for approx
            beta = knobs.get("beta", 1.0)
            check_vocab(self.vocab, queries.vocab, self._same_vocab)
            q = self.prepare(queries, beta) if beta < 1.0 else queries
            strategy = "exhaustive" if mode == "exhaustive" else knobs.get("strategy", "auto")
            return [self._search_one_raw(*q.row(0), k, CODES[strategy], knobs.get("alpha", 1.0), mask)]
        if mode == "approx":
            knobs = self.approx_knobs(**knobs)
            if mask.shape[0] and np.count_nonzero(mask) < SELECTIVE_FILTER * self.num_docs:
                docs, scores, counts = self._search_rows(self.prepare(queries), k, np.flatnonzero(mask).astype(np.int32))
            else:  # raw queries: the batch kernel's workers make them canonical, in parallel
                check_vocab(self.vocab, queries.vocab, self._same_vocab)
                docs, scores, counts, _ = self._search_approx(queries, k, knobs, threads, mask)
            scores = scores.astype(np.float64)
            scores *= self.scale  # the whole batch at once: a per-query multiply costs more than its arithmetic
            return [Hits(docs[i, : counts[i]], scores[i, : counts[i]]) for i in range(len(queries))]
        q = self.prepare(queries, knobs.pop("beta", 1.0))
        strategies = plan(len(q), "exhaustive" if mode == "exhaustive" else knobs.get("strategy", "auto"))
        docs, scores, counts = self._search_exact(q, k, strategies, knobs.get("alpha", 1.0), mask, threads)
        return [Hits(docs[i, : counts[i]], scores[i, : counts[i]], STRATEGIES[strategies[i]]) for i in range(len(q))]

    def _search_exact(self, q: SparseVectors, k: int, strategies: np.ndarray, alpha: float, mask: np.ndarray,
                      threads: int | None):
        """(docs, float64 scores, counts) of prepared queries, each by its strategy (``strategies``
        gets the one each query used), in parallel over ``threads``."""
        _, err_units, arrays = self._exact_args_once()
        return exact.search_batch(strategies, q.indptr, q.indices, q.values, k, np.float32(alpha), err_units, mask, *arrays,
                                  self._workers(threads, len(q)))

    def _search_one_raw(self, terms: np.ndarray, weights: np.ndarray, k: int, strategy: int, alpha: float,
                        mask: np.ndarray) -> Hits:
        """One raw query (as given: any order, repeats, weights <= 0) on this thread, prepared
        inside the kernel: argument passing plus one call."""
        s = self._thread_scratch()
        if terms.shape[0] > s.keys.shape[0]:
            n = max(terms.shape[0], 2 * s.keys.shape[0])
            s.keys, s.q_terms, s.q_weights = np.empty(n, np.int64), np.empty(n, np.int32), np.empty(n, np.float32)
        docs, scores, used = np.empty(k, np.int32), np.empty(k, np.float64), np.empty(1, np.int8)
        limit, err_units, arrays = self._exact_args_once()
        n = exact.search_one_raw(strategy, terms, weights, limit, k, np.float32(alpha), err_units, mask, *arrays,
                                 s.keys, s.q_terms, s.q_weights, s.acc, s.touched, s.found, s.ub, s.sbub, s.qdense_rescore,
                                 docs, scores, used)
        if n < 0:
            raise query_error(n, terms, weights, len(self.vocab), limit)
        return Hits(docs[:n], scores[:n], STRATEGIES[used[0]])

    def _exact_args_once(self) -> tuple[float, float, tuple]:
        """(weight limit, err_units, the array tuples post, fwd, blk, sup and the planner's
        record) of the exact kernels, gathered once: a query pays for none of it."""
        if self._exact_args is None:
            arrays = ((self.postings_indptr, self.postings_docs, self.postings_impacts, self.postings_weights),
                      (self.forward_indptr, self.forward_terms, self.forward_weights),
                      self.blocks.kernel_args(), self.blocks.superblock_args(), exact.new_record())
            self._exact_args = (self.weight_limit, self._err_units(), arrays)
        return self._exact_args

    def planner_record(self) -> dict[int, dict[str, int]]:
        """What exact search's planner has learnt from this index's queries: per k range (keyed
        by its lowest k, a power of two), the queries it could have probed, the probes it ran
        and those that won (see :mod:`lsr.index.kernels.exact`)."""
        record = self._exact_args_once()[2][4]
        return {1 << b: {"eligible": int(row[exact.ELIGIBLE]), "probes": int(row[exact.PROBES]), "wins": int(row[exact.WINS])}
                for b, row in enumerate(record) if row.any()}

    def _err_units(self) -> float:
        """The largest gap between a posting's float weight (as float32, as the forward index holds
        it) and its impact, in impact units: what exact search's candidate margin must cover."""
        qmax = np.iinfo(QUANTIZATIONS[self.manifest["settings"]["quantization"]]).max
        return float(self.manifest["stats"].get("max_quantization_error", self.scale)) / self.scale + qmax * 2.0**-23

    def _mask(self, allowed: np.ndarray | None) -> np.ndarray:
        """``allowed`` as the kernels take it: uint8, one per document, or empty for all."""
        if allowed is None:
            return _ALL
        mask = np.asarray(allowed)
        if mask.shape != (self.num_docs,):
            raise ValueError(f"allowed must hold one flag per document ({self.num_docs}), got shape {mask.shape}")
        return mask.view(np.uint8) if mask.dtype == np.bool_ else mask.astype(np.uint8, copy=False)

    def _search_rows(self, q: SparseVectors, k: int, rows: np.ndarray):
        """Exact top-k among ``rows`` of each prepared query, from approximate search's forward index."""
        s = self._thread_scratch()
        if getattr(s, "qdense", None) is None:
            s.qdense = np.zeros(len(self.vocab), dtype=np.float32)
        docs, scores = np.empty((len(q), k), np.int32), np.empty((len(q), k), np.float32)
        a = self.approx
        counts = [forward.search_rows(*q.row(i), rows, a.fwd_ptr, a.fwd_rows, a.fwd_impacts, k, s.qdense, docs[i], scores[i])
                  for i in range(len(q))]
        return docs, scores, counts

    # ---- approximate search -------------------------------------------------------------
    def approx_knobs(self, **given: Any) -> dict[str, Any]:
        """The knobs a ``mode="approx"`` search uses: those given, else the tuned defaults stored
        in the manifest (see :meth:`tune`), else the built-in defaults."""
        if self.approx is None:
            raise DataError("this index has no approximate-search structure: build it with approx=True "
                            "(`lsr index --approx`) or add it with `lsr tune`")
        given = {name: value for name, value in given.items() if value is not None}
        tuned = self.manifest["approx"].get("tuned", {}).get("knobs", {})
        return {**{k.name: k.default for k in APPROX.knobs}, **tuned, **APPROX.check_knobs(given)}

    def approx_searcher(self, k: int = 10, **knobs: Any) -> ApproxSearcher:
        """The thin single-query entry point of ``mode="approx"`` with ``k`` and the knobs fixed
        (the tuned defaults for those not given): ``searcher.search(term_ids, weights)`` returns
        (rows, scores) with no per-query Python beyond argument passing. One per thread."""
        knobs = self.approx_knobs(**knobs)  # first: refuses an index without the structure
        return ApproxSearcher(self.approx, len(self.vocab), self.num_docs, self.scale, self.weight_limit, self.check_k(k), **knobs)

    def _approx_scratch_searcher(self, k: int, knobs: Mapping[str, Any]) -> ApproxSearcher:
        """This thread's searcher for (k, knobs), over one scratch per thread (made on first use)."""
        s = self._scratch
        if getattr(s, "approx", None) is None:
            s.approx, s.approx_searchers = ApproxScratch(self.approx, len(self.vocab), self.num_docs), {}
        key = (k, int(knobs["query_cut"]), float(knobs["heap_factor"]))
        searcher = s.approx_searchers.get(key)
        if searcher is None:
            if len(s.approx_searchers) >= 64:
                s.approx_searchers.clear()
            searcher = s.approx_searchers[key] = ApproxSearcher(self.approx, len(self.vocab), self.num_docs, self.scale, self.weight_limit, k,
                                                                scratch=s.approx, **knobs)
        return searcher

    def _search_approx(self, q: SparseVectors, k: int, knobs: Mapping[str, Any], threads: int | None = None, mask: np.ndarray | None = None):
        """(docs, scores, counts, work stats) of queries over this vocabulary, prepared or raw
        (the kernels make them canonical); one query on this thread."""
        mask = _ALL if mask is None else mask
        if len(q) != 1:
            out = approx_search.search_approx_batch(q.indptr, q.indices, np.asarray(q.values, np.float32), self.weight_limit,
                                                    int(knobs["query_cut"]), np.float32(knobs["heap_factor"]), k,
                                                    *self.approx.kernel_args(), mask, self._workers(threads, len(q)))
            refused = np.flatnonzero(out[2] < 0)
            if refused.size:
                self.prepare(q)  # raises what preparing the batch first raised (its checks run over the whole batch)
                raise query_error(int(out[2][refused[0]]), q.indices, q.row(int(refused[0]))[1], len(self.vocab), self.weight_limit)
            return out
        searcher = self._approx_scratch_searcher(k, knobs)
        docs, scores = np.empty((1, k), np.int32), np.empty((1, k), np.float32)
        before = searcher.s.stats.copy()
        n = len(searcher.search_raw(q.indices, q.values, mask, docs[0], scores[0])[0])
        return docs, scores, [n], searcher.s.stats - before

    def approx_work(self, queries: SparseVectors, k: int = 10, **knobs: Any) -> dict[str, float]:
        """Mean work per query of an approximate search (lists, summary entries, blocks scored
        and skipped, documents scored, forward entries read): where its time goes."""
        q = self.prepare(queries)
        *_, stats = self._search_approx(q, self.check_k(k), self.approx_knobs(**knobs), threads=1)
        return {name: float(stats[i]) / max(1, len(q)) for i, name in enumerate(WORK_STATS)}

    def tune(
        self,
        queries: SparseVectors,
        target_recall: float = 0.95,
        k: int = 10,
        query_cuts: Sequence[int] = QUERY_CUTS,
        heap_factors: Sequence[float] = HEAP_FACTORS,
    ) -> TunedPoint:
        """Pick the cheapest approx knobs reaching ``target_recall`` (recall@k against the
        exhaustive top-k of ``queries``) with standard errors to spare (``pick_cheapest``), so
        that other queries reach it too, and store them in the manifest as the defaults.

        Cost is the work counted by the kernel (entries read per query), not wall time, so the
        choice is deterministic and does not depend on machine load. Call :meth:`save` to
        persist it. Returns the chosen point: the most accurate one, with ``reached`` false, if none
        reaches the target (a structure built with more postings per list may).
        """
        if not 0.0 < target_recall <= 1.0:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall!r}")
        self.approx_knobs()  # the structure must exist
        k = self.check_k(k)
        q = self.prepare(queries)
        truth = [set(h.rows.tolist()) for h in self.search(q, k, mode="exhaustive")]
        points = []
        for cut in query_cuts:
            for hf in heap_factors:
                docs, _, counts, stats = self._search_approx(q, k, APPROX.check_knobs({"query_cut": cut, "heap_factor": hf}))
                found = [docs[i, : counts[i]].tolist() for i in range(len(q))]
                recall, se = recall_at_k(found, truth)
                points.append(TunedPoint(cut, hf, recall, mean_cost(stats, len(q)), se))
        best = pick_cheapest(points, target_recall)
        self.manifest["approx"]["tuned"] = {
            "knobs": best.knobs(), "target_recall": target_recall, "k": k, "queries": len(q),
            "recall": round(best.recall, 4), "recall_se": round(best.recall_se, 4), "cost": round(best.cost, 1),
            "reached": best.reached,
        }
        return best

    def contributions(self, query: SparseVectors, row: int) -> list[tuple[int, float, float]]:
        """(term id, query weight, stored document weight) of each term a one-row query shares
        with document ``row``: the parts its score adds up."""
        q = self.prepare(query)
        lo, hi = self.forward_indptr[row], self.forward_indptr[row + 1]
        terms, weights = self.forward_terms[lo:hi], self.forward_weights[lo:hi]
        at = np.minimum(np.searchsorted(terms, q.indices), max(0, hi - lo - 1))
        shared = (hi > lo) & (terms[at] == q.indices) if hi > lo else np.zeros(len(q.indices), bool)
        return [(int(t), float(qw), float(weights[j])) for t, qw, j, ok in zip(q.indices, q.values, at, shared) if ok]

    # ---- helpers ------------------------------------------------------------------------
    @staticmethod
    def _workers(threads: int | None, n_queries: int) -> int:
        return max(1, min(threads or numba.config.NUMBA_NUM_THREADS, n_queries))

    def _thread_scratch(self) -> threading.local:
        """Per-thread accumulators reused across queries (the kernels leave them zeroed)."""
        s = self._scratch
        if getattr(s, "acc", None) is None:
            s.acc = np.zeros(self.num_docs, dtype=np.float64)
            s.touched = np.empty(self.num_docs, dtype=np.int32)
            s.found = np.empty(self.num_docs, dtype=np.float64)
            s.ub = np.zeros(self.blocks.n_blocks, dtype=np.float32)
            s.qdense_rescore = np.zeros(len(self.vocab), dtype=np.float32)
            s.sbub = np.zeros(self.blocks.n_superblocks, dtype=np.float32)
            s.keys, s.q_terms, s.q_weights = np.empty(64, np.int64), np.empty(64, np.int32), np.empty(64, np.float32)
        return s


def check_k(k: int, n_docs: int) -> int:
    """``k`` checked (a positive integer) and capped at the number of documents."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(min(k, max(n_docs, 1)))


def check_vocab(vocab: Sequence[str], given: Sequence[str], seen: dict[int, Sequence[str]]) -> None:
    """Queries must be over ``vocab``. An equal list seen once is remembered in ``seen``, so a
    caller's own copy (an encoder's) costs one comparison, not one per query."""
    if given is vocab or seen.get(id(given)) is given:
        return
    if len(given) != len(vocab) or list(given) != vocab:
        raise DataError(f"the queries are over another vocabulary ({len(given)} terms, this index has "
                        f"{len(vocab)}): encode them over the index's vocabulary")
    if len(seen) < 8:
        seen[id(given)] = given


def _check_rows_ascend(vectors: SparseVectors) -> None:
    """Term ids strictly ascend within each row: a repeated term would be scored twice by the
    postings but bounded once by the block maxima, breaking exact search."""
    bad = transpose.first_unascending(vectors.indptr, vectors.indices)
    if bad >= 0:
        row = int(np.searchsorted(vectors.indptr, bad, side="right") - 1)
        term = vectors.vocab[int(vectors.indices[bad])]
        raise DataError(f"document {row}: term ids must strictly ascend within a row (term {term!r} repeats or is out of order)")
