"""Retriever: text in, ranked document ids out, over a SparseIndex and its optional dense part.

The retriever owns everything the numeric index does not: the query encoders (loaded from
what the manifest names, on first use), the mapping of an encoder's vocabulary onto the
index's, string document ids, explanations, and the dense modes' fusion. Every mode and knob
is checked against the one registry, :mod:`lsr.retrieval.modes`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.encoders.base import Encoder
from lsr.encoders.registry import load_encoder
from lsr.errors import DataError
from lsr.data.docstore import FIELDS
from lsr.data.files import check_text
from lsr.data.filters import check_filter
from lsr.errors import LsrError
from lsr.index import SparseIndex
from lsr.index.segments import Segments
from lsr.index.approx import HEAP_FACTORS, QUERY_CUTS, TunedPoint
from lsr.encoders.inference_free import IDF, IDF_JSON, MODEL, InferenceFreeEncoder, check_query_encoder, document_tokenizer
from lsr.retrieval.collection import SETTINGS_FILE, Collection, live_document_frequencies, query_defaults
from lsr.retrieval.hybrid import HybridQueries, search_dense_modes
from lsr.retrieval.modes import DENSE_MODES, check_parts, get_mode
from lsr.util import concat, offsets

Query = Union[str, Mapping[str, float]]
Encoded = Union[SparseVectors, HybridQueries]


@dataclass(frozen=True)
class SearchResult:
    """Hits of one query, best first; ``dense_fraction`` is the share of dense vectors scored
    (dense modes; None where it is not known or does not apply); ``fields`` the stored fields
    of each hit when asked for (a collection's documents); ``strategy`` how exact search found
    them (``exhaustive``, ``blockmax``, ``superblock``; ``a+b`` when segments differed)."""

    ids: list[str]
    scores: list[float]
    dense_fraction: float | None = None
    fields: list[dict[str, Any]] | None = None
    strategy: str | None = field(default=None, compare=False)  # how, not what: equal results may differ in it

    def __len__(self) -> int:
        return len(self.ids)


class Retriever:
    """Search an index or a living collection by text, ``{term: weight}`` mappings or
    pre-encoded queries. Over a collection every call searches the newest committed
    generation, one generation per call."""

    def __init__(self, source: SparseIndex | Segments | Collection, *, encoder: Encoder | None = None,
                 dense_encoder: Encoder | None = None) -> None:
        self.collection = source if isinstance(source, Collection) else None
        self._segments = None if self.collection else source if isinstance(source, Segments) else Segments.of(source)
        self._lock = threading.Lock()
        self._encoder: Encoder | None = None
        self._encoder_map: np.ndarray | None = None
        self._encoder_vocab = 0
        self._dense_encoder: Encoder | None = None
        self._term_ids: dict[str, int] | None = None
        self._query_encoders: dict[str, Any] = {}  # inference-free encoders by name (idf: with the snapshot it weighs)
        self._vocab_maps: dict[int, tuple[Encoder, np.ndarray | None]] = {}
        self._query_defaults: dict[str, Any] | None = None
        if encoder is not None:
            self.encoder = encoder
        if dense_encoder is not None:
            self.dense_encoder = dense_encoder

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: SparseVectors, doc_ids: Sequence[str], *, encoder: Encoder | None = None, **options: Any) -> "Retriever":
        """Index ``vectors`` (see :meth:`SparseIndex.build` for ``options``); an ``encoder``
        given is recorded as the query encoder (its name and settings) and used for text queries."""
        if encoder is not None:
            options = {"model": encoder.name, "encoder_settings": encoder.settings(), **options}
        return cls(SparseIndex.build(vectors, doc_ids, **options), encoder=encoder)

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = True, verify: bool = False, encoder: Encoder | None = None) -> "Retriever":
        """Open a collection (read-only) or an index directory; the query model loads on first use."""
        if (Path(path) / SETTINGS_FILE).is_file():
            collection = Collection.open(path)
            if verify:  # every segment of the newest generation against its checksums
                for segment in collection.snapshot().indexes:
                    SparseIndex.load(segment.path, verify=True)
            return cls(collection, encoder=encoder)
        return cls(SparseIndex.load(path, mmap=mmap, verify=verify), encoder=encoder)

    def save(self, path: str | os.PathLike) -> Path:
        return self.index.save(path)

    # ---- facts --------------------------------------------------------------------------
    @property
    def segments(self) -> Segments:
        """What a search reads: the newest committed generation of a collection."""
        return self.collection.snapshot() if self.collection is not None else self._segments

    @property
    def index(self) -> SparseIndex:
        """The one SparseIndex of a one-segment index (a collection with more: optimize it first)."""
        indexes = self.segments.indexes
        if len(indexes) != 1:
            raise LsrError(f"this collection has {len(indexes)} segments, not one: `lsr optimize` merges them")
        return indexes[0]

    @property
    def path(self) -> Path | None:
        return self.collection.path if self.collection is not None else self.index.path

    @property
    def manifest(self) -> dict[str, Any]:
        """The index manifest (of a one-segment index), or the collection's settings."""
        return self.collection.settings if self.collection is not None else self.index.manifest

    @property
    def doc_ids(self) -> list[str]:
        return self.index.doc_ids

    @property
    def vocab(self) -> list[str]:
        return self.segments.vocab

    @property
    def num_docs(self) -> int:
        return self.segments.num_docs

    @property
    def model(self) -> str | None:
        """The query encoder the manifest names (None: the index takes term weights only)."""
        return self.manifest.get("model")

    def info(self) -> dict[str, Any]:
        return self.collection.info() if self.collection is not None else self.index.info()

    # ---- encoders -----------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The sparse query encoder: the one the manifest names, loaded on first use (and again
        when a growing vocabulary grew: a BM25 query must see the new terms)."""
        if self._encoder is None or (not self._encoder.per_document and self._encoder_vocab != len(self.vocab)):
            with self._lock:
                if self._encoder is None or (not self._encoder.per_document and self._encoder_vocab != len(self.vocab)):
                    if not self.model:
                        raise DataError("this index records no query encoder: query it with term weights, or rebuild it "
                                        "with --model M (`lsr index --vectors V --model M` records one)")
                    self.encoder = load_encoder(self.model, vocab=self.vocab, **self.manifest.get("encoder", {}))
        return self._encoder

    @encoder.setter
    def encoder(self, encoder: Encoder) -> None:
        """Attach a sparse encoder; its term ids are mapped onto the index vocabulary once."""
        if not encoder.sparse:
            raise DataError(f"{type(encoder).__name__} is a dense encoder; the sparse side needs a sparse one")
        if list(encoder.vocab) == self.vocab:
            mapping = None
        else:
            position = self._term_positions()
            mapping = np.array([position.get(t, -1) for t in encoder.vocab], dtype=np.int32)
        self._encoder_map = mapping
        self._encoder_vocab = len(self.vocab)
        self._encoder = encoder

    @property
    def dense_encoder(self) -> Encoder:
        """The dense query encoder: the model the dense part was built with, loaded on first use."""
        if self._dense_encoder is None:
            with self._lock:
                if self._dense_encoder is None:
                    settings = self._dense_settings()
                    if not settings.get("model"):
                        raise DataError("the index has no dense part built by a model: dense queries need one")
                    self.dense_encoder = load_encoder(settings["model"], dense=True, **settings.get("encoder", {}))
        return self._dense_encoder

    @dense_encoder.setter
    def dense_encoder(self, encoder: Encoder) -> None:
        dim = self._dense_settings().get("dim")
        if dim is not None and getattr(encoder, "dim", None) != dim:
            raise DataError(f"the encoder gives {getattr(encoder, 'dim', '?')}-dim vectors; the dense part holds {dim}-dim ones")
        self._dense_encoder = encoder

    def _dense_settings(self) -> dict[str, Any]:
        """The dense part's settings (model, encoder, dim), from a segment that has one."""
        for ix in self.segments.indexes:
            if ix.dense is not None:
                return ix.dense.settings
        dense = self.collection.settings.get("dense") if self.collection is not None else None
        return {"model": dense["model"]} if dense else {}

    @property
    def query_defaults(self) -> dict[str, Any]:
        """How text queries are encoded unless a search says otherwise (the collection's
        ``query`` settings: ``encoder``, ``expansion``, ``weighting``)."""
        if self._query_defaults is None:
            self._query_defaults = query_defaults(self.manifest.get("query"), self.model)
        return self._query_defaults

    def query_encoder(self, name: str | None = None, snap: Segments | None = None) -> Encoder:
        """The sparse encoder of text queries called ``name`` (:data:`~lsr.encoders.inference_free.QUERY_ENCODERS`;
        default: the index's): ``model`` is :attr:`encoder`; ``idf`` the document model's tokenizer
        weighted by the IDF of the generation ``snap`` (default: the newest); ``idf-json`` the
        model folder's table."""
        name = check_query_encoder(name or self.query_defaults["encoder"], self.model)
        if name == MODEL:
            return self.encoder
        if not self.model:
            raise DataError(f"query encoder {name!r} needs the document model's tokenizer; this index records no model")
        with self._lock:
            if name == IDF_JSON:
                if IDF_JSON not in self._query_encoders:
                    self._query_encoders[IDF_JSON] = InferenceFreeEncoder.from_pretrained(self.model)
                return self._query_encoders[IDF_JSON]
            snap = snap or self.segments
            cached = self._query_encoders.get(IDF)
            if cached is None or cached[0] is not snap:
                tokenizer = self._query_encoders.get("tokenizer")
                if tokenizer is None or tokenizer[2] is not snap.vocab and len(tokenizer[2]) != len(snap.vocab):
                    tokenizer = (*document_tokenizer(self.model, snap.vocab, self.manifest.get("encoder")), snap.vocab)
                    self._query_encoders["tokenizer"] = tokenizer
                token_ids, token_vocab, _ = tokenizer
                df, n_docs = live_document_frequencies(snap)
                if token_vocab is not snap.vocab and list(token_vocab) != snap.vocab:  # a vectors collection's grown vocabulary
                    position = self._term_positions(snap.vocab)
                    where = np.array([position.get(t, -1) for t in token_vocab], np.int64)
                    df = np.where(where >= 0, df[where], 0)
                cached = (snap, InferenceFreeEncoder.from_document_frequencies(token_ids, token_vocab, df, n_docs))
                self._query_encoders[IDF] = cached
            return cached[1]

    def _vocab_map(self, encoder: Encoder, vocab: Sequence[str]) -> np.ndarray | None:
        """Encoder term ids -> index term ids (-1: absent), None when the vocabularies agree."""
        if encoder is self._encoder:
            return self._encoder_map
        if encoder.vocab is vocab:
            return None
        cached = self._vocab_maps.get(id(encoder))
        if cached is None or cached[0] is not encoder:
            position = self._term_positions(vocab)
            mapping = None if list(encoder.vocab) == vocab else np.array([position.get(t, -1) for t in encoder.vocab], np.int32)
            cached = self._vocab_maps[id(encoder)] = (encoder, mapping)
        return cached[1]

    def _term_positions(self, vocab: Sequence[str] | None = None) -> dict[str, int]:
        vocab = self.vocab if vocab is None else vocab
        if self._term_ids is None or len(self._term_ids) != len(vocab):
            self._term_ids = {t: i for i, t in enumerate(vocab)}
        return self._term_ids

    # ---- queries ------------------------------------------------------------------------
    def encode_queries(self, queries: Sequence[Query], *, query_encoder: str | None = None,
                       query_expansion: bool | None = None, query_weighting: bool | None = None) -> SparseVectors:
        """Queries as rows over the index vocabulary: texts through the query encoder, mappings
        as given (terms the index does not hold cannot match and are dropped).

        For texts (defaults: :attr:`query_defaults`): ``query_encoder`` picks the encoder (see
        :meth:`query_encoder`); ``query_expansion=False`` keeps only the weights of the query's
        own tokens (an expanding encoder's other terms are dropped); ``query_weighting=False``
        gives every kept term weight 1.
        """
        for q in queries:
            if not isinstance(q, (str, Mapping)):
                raise TypeError(f"a query is a text or a {{term: weight}} mapping, got {type(q).__name__}")
        defaults = self.query_defaults
        expansion = defaults["expansion"] if query_expansion is None else _flag(query_expansion, "query_expansion")
        weighting = defaults["weighting"] if query_weighting is None else _flag(query_weighting, "query_weighting")
        snap = self.segments  # one generation for the whole batch
        vocab = snap.vocab
        texts = [check_text(q, f"query {i}") for i, q in enumerate(queries) if isinstance(q, str)]
        if texts:
            encoder = self.query_encoder(query_encoder, snap)
            vecs = encoder.encode_queries(texts) if expansion else encoder.encode_queries(texts, expansion=False)
            if not weighting:
                vecs = SparseVectors(vecs.indptr, vecs.indices, np.ones_like(vecs.values), vecs.vocab)
            mapping = self._vocab_map(encoder, vocab)
            if mapping is None and len(texts) == len(queries):  # the common case: nothing to map or merge
                return SparseVectors(vecs.indptr, vecs.indices, vecs.values, vocab)
        else:
            vecs, mapping = None, None
        encoded = iter(_mapped_rows(vecs, mapping)) if texts else iter(())
        mappings = [q for q in queries if not isinstance(q, str)]
        from_dicts = SparseVectors.from_dicts(mappings, vocab, source="query", term_ids=self._term_positions(vocab))
        rows, n_dict = [], 0
        for q in queries:
            if isinstance(q, str):
                rows.append(next(encoded))
            else:
                rows.append(from_dicts.row(n_dict))
                n_dict += 1
        indptr = offsets([len(r[0]) for r in rows])
        return SparseVectors(indptr, concat([r[0] for r in rows], np.int32), concat([r[1] for r in rows], np.float32), vocab)

    def encode(self, queries: Sequence[Query], mode: str = "exact", **query: Any) -> Encoded:
        """Queries encoded the way ``mode`` searches them: sparse rows, or, for the dense modes
        (text only), a dense vector per query plus the sparse rows the fusion needs. ``query``:
        the text options of :meth:`encode_queries`."""
        spec = get_mode(mode)
        check_parts(spec, self.segments, f"the index {self.path or ''}".strip())  # before loading any model
        if not spec.text_only:
            return self.encode_queries(queries, **query)
        if not all(isinstance(q, str) for q in queries):
            raise DataError(f"mode {mode!r} needs text queries: a {{term: weight}} query has no dense encoding")
        texts = list(queries)
        sparse = self.encode_queries(texts, **query) if mode != "dense" else None
        return HybridQueries(sparse, self.dense_encoder.encode_queries(texts))

    # ---- search -------------------------------------------------------------------------
    def search(self, query: Query, k: int = 10, *, mode: str = "exact", **knobs: Any) -> SearchResult:
        """Top-k documents for a text or a ``{term: weight}`` query, on this thread.

        ``mode`` and ``knobs`` are those of :data:`lsr.retrieval.modes.MODES` (``exact``:
        block-max pruning, ``alpha``/``beta``; ``exhaustive``; ``approx``: ``query_cut``,
        ``heap_factor``; ``dense``, ``hybrid``, ``selective``: ``fusion``, ``dense_weight``, ...);
        ``query_encoder``, ``query_expansion``, ``query_weighting`` as in :meth:`encode_queries`.
        """
        return self.search_batch([query], k, mode=mode, threads=1, **knobs)[0]

    def search_batch(self, queries: Sequence[Query], k: int = 10, *, mode: str = "exact", threads: int | None = None,
                     filter: Mapping[str, Any] | None = None, fields: Sequence[str] | None = None, snippet: int | None = None,
                     query_encoder: str | None = None, query_expansion: bool | None = None, query_weighting: bool | None = None,
                     **knobs: Any) -> list[SearchResult]:
        """:meth:`search` for many queries, in parallel over ``threads`` (default: all cores).
        Everything is checked before any query is encoded."""
        spec = get_mode(mode)
        check_parts(spec, self.segments, f"the index {self.path or ''}".strip())
        spec.check_knobs(knobs)
        self.segments.check_k(k)
        if filter is not None:
            check_filter(filter)
        check_fields(fields, snippet)
        if not len(queries):
            return []
        query = {"query_encoder": query_encoder, "query_expansion": query_expansion, "query_weighting": query_weighting}
        return self.search_encoded(self.encode(queries, mode, **query), k, mode=mode, threads=threads, filter=filter, fields=fields,
                                   snippet=snippet, **knobs)

    def search_encoded(self, queries: Encoded, k: int = 10, *, mode: str = "exact", threads: int | None = None,
                       filter: Mapping[str, Any] | None = None, fields: Sequence[str] | None = None,
                       snippet: int | None = None, **knobs: Any) -> list[SearchResult]:
        """Search queries from :meth:`encode` (or SparseVectors over the index vocabulary).

        ``filter`` (:mod:`lsr.data.filters`) keeps only documents whose metadata match it;
        ``fields`` (of ``title``, ``text``, ``metadata``) returns those stored fields with each
        hit, ``snippet`` cutting texts to that many characters.
        """
        check_fields(fields, snippet)
        if fields and self.collection is None:
            raise DataError("this index stores no documents: stored fields need a collection (`lsr upgrade --index DIR`)")
        snap, hits = self.search_rows(queries, k, mode=mode, threads=threads, filter=filter, **knobs)
        return [SearchResult(snap.doc_ids(h.rows), h.scores.tolist(), getattr(h, "dense_fraction", None),
                             self.collection.fields(h.rows, snap, fields, snippet) if fields else None,
                             getattr(h, "strategy", None)) for h in hits]

    def search_rows(self, queries: Encoded, k: int = 10, *, mode: str = "exact", threads: int | None = None,
                    filter: Mapping[str, Any] | None = None, snap: Segments | None = None, **knobs: Any) -> tuple[Segments, list[Any]]:
        """:meth:`search_encoded` as global rows of the generation searched (``snap``, default:
        the newest; returned with them): what a shard of a sharded index answers, rows being its
        tie order (a shard passes the generation it prepared the queries against, saving a
        second look-up of the newest)."""
        snap = self.segments if snap is None else snap
        check_parts(get_mode(mode), snap, f"the index {self.path or ''}".strip())
        allowed = None
        if filter is not None:
            if self.collection is None or self.collection.store is None:
                raise DataError("this index stores no metadata: filters need a collection (`lsr upgrade --index DIR`)")
            allowed = self.collection.filter_masks(filter, snap)
        if mode in DENSE_MODES:
            if not isinstance(queries, HybridQueries):
                raise DataError(f"mode {mode!r} searches queries encoded for it (Retriever.encode(queries, {mode!r}))")
            hits: list[Any] = search_dense_modes(snap, queries, k, mode, knobs, threads, allowed)
        elif isinstance(queries, SparseVectors):
            hits = snap.search(queries, k, mode=mode, threads=threads, allowed=allowed, **knobs)
        else:
            raise DataError(f"mode {mode!r} searches sparse query rows, got {type(queries).__name__}")
        return snap, hits

    def explain(self, query: Query, doc_id: str) -> list[dict[str, Any]]:
        """Per matched term, heaviest first: query weight, the document's stored weight, and the
        contribution (their product; a hit's contributions add up to its sparse score)."""
        snap = self.segments
        try:
            row = snap.positions()[doc_id]
        except KeyError:
            raise DataError(f"unknown document id {doc_id!r}") from None
        parts = snap.contributions(self.encode_queries([query]), row)
        out = [{"term": self.vocab[t], "query_weight": qw, "doc_weight": dw, "contribution": qw * dw} for t, qw, dw in parts]
        return sorted(out, key=lambda e: -e["contribution"])

    def tune(self, queries: Sequence[Query] | SparseVectors, target_recall: float = 0.95, k: int = 10,
             query_cuts: Sequence[int] = QUERY_CUTS, heap_factors: Sequence[float] = HEAP_FACTORS) -> TunedPoint:
        """:meth:`SparseIndex.tune` on sample queries (texts are encoded first)."""
        encoded = queries if isinstance(queries, SparseVectors) else self.encode_queries(queries)
        return self.index.tune(encoded, target_recall, k, query_cuts, heap_factors)


def _mapped_rows(vecs: SparseVectors, mapping: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each row's terms as index term ids (terms the index lacks dropped)."""
    rows = []
    for i in range(len(vecs)):
        ids, weights = vecs.row(i)
        if mapping is not None:
            ids = mapping[ids]
            keep = ids >= 0
            ids, weights = ids[keep], weights[keep]
        rows.append((ids, weights))
    return rows


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def check_fields(fields: Sequence[str] | None, snippet: int | None) -> None:
    if fields is None and snippet is None:
        return
    unknown = sorted(set(fields or ()) - set(FIELDS))
    if unknown:
        raise DataError(f"unknown field(s) {', '.join(unknown)}; stored fields: {', '.join(FIELDS)}")
    if snippet is not None and (isinstance(snippet, bool) or not isinstance(snippet, int) or snippet < 1):
        raise ValueError(f"snippet must be a positive number of characters, got {snippet!r}")
