"""The HTTP API over one index: search, batch search, encode, stats and health.

Every request is validated by a typed model that rejects unknown fields; every error,
including validation errors and unknown routes, is JSON of one shape:
``{"error": {"type": ..., "message": ..., "details": ...}}``. Searches and encodings run in
worker threads (the Numba kernels release the GIL), so the event loop stays free and
concurrent requests use every core.
"""

import hmac
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
import torch
from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lsr.data.filters import check_filter
from lsr.errors import DataError, LsrError, Unavailable
from lsr.index.dense import KIND_KNOBS
from lsr.index.modes import Knob
from lsr.retrieval import Query, Retriever, SearchResult
from lsr.retrieval.collection import Collection
from lsr.retrieval.hybrid import FusedSystem, Fusion, default_weight
from lsr.service import writes
from lsr.service.page import search_page
from lsr.service.scheduling import UNQUEUED, Admission, ClientGone, Overloaded, QueryBatcher, Ticket
from lsr.encoders.inference_free import QUERY_ENCODERS
from lsr.retrieval.modes import MODES, all_knobs
from lsr.util import machine_threads
from lsr.version import __version__

log = logging.getLogger("lsr.service")

# Caps that are part of the API contract: they appear in the OpenAPI schema, and a request
# beyond one gets a 422 naming the field.
MAX_K = 1000
MAX_EXPLAIN_K = 100  # each explained hit costs a pass over the query's terms
MAX_QUERY_CHARS = 4096  # queries are truncated to the model's query length long before this
MAX_TEXT_CHARS = 100_000  # per text given to /encode
MAX_TERMS = 1024  # per {term: weight} query
MAX_TERM_CHARS = 256
MAX_WEIGHT = 1e6  # query weights beyond this could overflow the kernels' float32 scores
MAX_BATCH = 256  # queries per /search/batch, texts per /encode
MAX_FUSED = 8  # systems per /search/fused

API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class Limits:
    """Per-deployment limits and thread counts, not part of the request schema."""

    max_body_bytes: int = 2 << 20
    """Larger request bodies get a 413 before they are parsed."""
    max_concurrency: int = field(default_factory=machine_threads)
    """Requests computed at once, in worker threads; more wait their turn. More threads than
    cores only adds contention, since searches and encodings are CPU-bound."""
    encoder_threads: int | None = 1
    """Torch threads per encoding (None leaves torch's setting). Requests already run in
    parallel, and several requests each spinning up a multi-threaded torch op on the same
    cores slow each other down several times over."""
    queue_depth: int = 64
    """Requests that may wait for a worker; more are answered 503 with Retry-After at once."""
    queue_timeout_ms: int = 2000
    """A request that waited this long for a worker is answered 503 instead of late."""
    batch_max: int = 32
    """Text queries of concurrent requests encoded in one model call, at most this many."""
    batch_wait_ms: float = 2.0
    """How long a text query waits for others to share its encoding call (0: no batching)."""
    commit_docs: int = 1000
    """Writable collections: commit as soon as this many changes are buffered."""
    commit_ms: int = 1000
    """Writable collections: commit buffered changes at most this long after they arrived."""


# ---- modes ------------------------------------------------------------------------------
SearchMode = Literal[tuple(MODES)]  # type: ignore[valid-type]
"""Accepted values of ``mode``: the registry's (lsr.retrieval.modes)."""
TEXT_ONLY = tuple(name for name, mode in MODES.items() if mode.text_only)


# ---- request and response models ---------------------------------------------------------
class ApiModel(BaseModel):
    """Base of every request and response: unknown fields and values of the wrong JSON type
    (``"k": "10"``, ``"explain": 1``) are a 422, so mistakes never pass silently."""

    model_config = ConfigDict(extra="forbid", strict=True)


# The cross-field rules, stated in the schema too, so clients (and schema-driven fuzzers)
# can tell a valid request from the schema alone.
_ONE_OF_QUERY_OR_VECTOR = {
    "oneOf": [
        {"required": ["query"], "properties": {"query": {"type": "string"}}},
        {"required": ["vector"], "properties": {"vector": {"type": "object"}}},
    ]
}
_EXPLAIN_CAPS_K = {"if": {"required": ["explain"], "properties": {"explain": {"const": True}}}, "then": {"properties": {"k": {"maximum": MAX_EXPLAIN_K}}}}


def _knob_schema(knob: Knob) -> dict[str, Any]:
    if knob.choices:
        return {"type": "string", "enum": list(knob.choices)}
    schema: dict[str, Any] = {"type": "integer" if knob.integer else "number", "maximum": knob.hi}
    schema["exclusiveMinimum" if knob.lo_open else "minimum"] = knob.lo
    return schema


def _per_mode(batch: bool, queries: bool = True) -> dict[str, Any]:
    """Each mode's own knobs, and (with ``queries``) the dense modes' need for text queries (no
    explain), stated in the schema, so that a request the schema allows is one the mode takes."""
    rules = []
    for name, mode in MODES.items():
        when: dict[str, Any] = {"required": ["mode"], "properties": {"mode": {"const": name}}}
        if name == "exact":  # the default
            when = {"anyOf": [{"not": {"required": ["mode"]}}, when]}
        knobs = {k.name: _knob_schema(k) for k in mode.knobs}
        knobs_rule: dict[str, Any] = {"properties": knobs, "additionalProperties": False}
        if {"dense_weight", "fusion"} <= knobs.keys():  # dense_weight weighs linear fusion (lsr.retrieval.hybrid)
            knobs_rule.update({"if": {"required": ["dense_weight"]}, "then": {"properties": {"fusion": {"const": "linear"}}}})
        then: dict[str, Any] = {"properties": {"knobs": knobs_rule}}
        if mode.text_only and queries:
            text = {"required": ["query"], "properties": {"query": {"type": "string"}}}
            if batch:
                then["properties"]["queries"] = {"items": text}
            else:
                then.update(text, properties={**then["properties"], **text["properties"], "explain": {"const": False}})
        rules.append({"if": when, "then": then})
    return {"allOf": rules}


_KNOB_RANGES = {"properties": {k.name: _knob_schema(k) for k in all_knobs().values()}, "additionalProperties": False}

# JSON has one number type: 10.0 is an integer to JSON Schema, so accept it where an int is due
# (strict mode would not); "10" and true stay errors. Placed after an int's constraints.
_WHOLE_FLOAT_AS_INT = BeforeValidator(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)
Term = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TERM_CHARS)]
Weight = Annotated[float, Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False)]
KnobValue = Annotated[float, Field(allow_inf_nan=False)] | Annotated[str, StringConstraints(max_length=32)]


class QueryInput(ApiModel):
    """One query: a text, encoded by the index's model, or ``{term: weight}`` used as is."""

    model_config = ConfigDict(
        json_schema_extra={
            **_ONE_OF_QUERY_OR_VECTOR,
            "examples": [{"query": "computer-based information retrieval"}, {"vector": {"retrieval": 1.4, "index": 0.7}}],
        }
    )

    query: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS, description="Query text; null means absent.")
    vector: dict[Term, Weight] | None = Field(
        None, max_length=MAX_TERMS, description="Query term weights (>= 0); terms outside the index vocabulary match nothing. Null means absent."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "QueryInput":
        if (self.query is None) == (self.vector is None):
            raise PydanticCustomError("query_or_vector", 'give exactly one of "query" (a text) or "vector" ({term: weight})')
        return self

    def as_query(self) -> Query:
        return self.query if self.query is not None else self.vector  # type: ignore[return-value]


_FilterScalar = str | float | bool | None


class FilterCondition(BaseModel):
    """The schema (only) of one field's condition in a filter (:mod:`lsr.data.filters`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})
    eq: _FilterScalar = None
    ne: _FilterScalar = None
    in_: list[_FilterScalar] = Field(None, alias="in")
    nin: list[_FilterScalar] = Field(None)
    gt: float = Field(None)
    gte: float = Field(None)
    lt: float = Field(None)
    lte: float = Field(None)
    exists: bool = Field(None)


class MetadataFilter(BaseModel):
    """The schema (only) of a filter, so that a filter the schema allows is one check_filter takes."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"minProperties": 1, "propertyNames": {"minLength": 1, "pattern": "^[^.]"}})
    and_: list["MetadataFilter"] = Field(None, alias="and", min_length=1)
    or_: list["MetadataFilter"] = Field(None, alias="or", min_length=1)
    not_: "MetadataFilter" = Field(None, alias="not")
    __pydantic_extra__: dict[str, _FilterScalar | FilterCondition]


class _FilterSchema:
    """Parsed as a plain object (check_filter validates it, naming the place of a mistake);
    described by :class:`MetadataFilter`."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core: Any, handler: Any) -> dict[str, Any]:
        return handler(MetadataFilter.__pydantic_core_schema__)


QUERY_ENCODER_NAMES = (*QUERY_ENCODERS, "splade", "bm25")


class QueryOptions(ApiModel):
    """How query texts become term weights (each unset option: the index's default)."""

    query_encoder: Literal[QUERY_ENCODER_NAMES] | None = Field(  # type: ignore[valid-type]
        None, description="How query texts become term weights (default: the index's): "
        + "; ".join(f"`{k}`: {v}" for k, v in QUERY_ENCODERS.items()) + "; `splade`/`bm25` name the index's own model.")
    query_expansion: bool | None = Field(None, description="false: a query keeps only its own tokens' weights (default: the index's).")
    query_weighting: bool | None = Field(None, description="false: every query term weighs 1 (default: the index's).")

    def query_options(self) -> dict[str, Any]:
        """The query-encoding options given, as Retriever.encode takes them."""
        given = {"query_encoder": self.query_encoder, "query_expansion": self.query_expansion, "query_weighting": self.query_weighting}
        return {k: v for k, v in given.items() if v is not None}


class SearchSettings(QueryOptions):
    """How to search: depth, mode and the mode's knobs."""

    k: Annotated[int, Field(ge=1, le=MAX_K), _WHOLE_FLOAT_AS_INT] = Field(10, description="Number of hits.")
    mode: SearchMode = Field("exact", description="Search mode: " + "; ".join(f"`{m.name}`: {m.help}" for m in MODES.values())
                             + f". {', '.join(TEXT_ONLY)} need text queries and an index with a dense part.")
    knobs: dict[str, KnobValue] = Field(default_factory=dict, json_schema_extra=_KNOB_RANGES, description="Mode-specific settings: "
                                        + "; ".join(f"{m.name}: {', '.join(m.knob_names) or 'none'}" for m in MODES.values()) + ".")

    filter: Annotated[dict[str, Any], _FilterSchema] | None = Field(None, description="Metadata filter (a collection): equality `{\"lang\": \"en\"}`, "
                                          "`in`, `nin`, `ne`, ranges `{\"year\": {\"gte\": 2000}}`, `exists`, and `and`/`or`/`not` of those.",
                                          examples=[{"year": {"gte": 2000}, "lang": "en"}])
    fields: list[Literal["title", "text", "metadata"]] | None = Field(None, max_length=3, description="Stored fields returned with each hit.")
    snippet: Annotated[int, Field(ge=1, le=MAX_TEXT_CHARS), _WHOLE_FLOAT_AS_INT] | None = Field(
        None, description="Cut returned titles and texts to this many characters.")

    @model_validator(mode="after")
    def _knobs_fit_mode(self) -> "SearchSettings":
        try:
            self.knobs = MODES[self.mode].check_knobs(self.knobs)
            if self.filter is not None:
                check_filter(self.filter)
        except ValueError as e:
            raise PydanticCustomError("knob", "{reason}", {"reason": str(e)}) from None
        return self

    def where(self) -> dict[str, Any]:
        """The filter and stored-field options, as Retriever.search_encoded takes them."""
        return {"filter": self.filter, "fields": self.fields, "snippet": self.snippet}


    def used(self) -> "SettingsUsed":
        return SettingsUsed(mode=self.mode, k=self.k, knobs=self.knobs)


def _check_text(mode: str, texts: Sequence[str | None]) -> None:
    if mode in TEXT_ONLY and any(t is None for t in texts):
        raise PydanticCustomError("text_only", "mode '{mode}' needs text queries (\"query\"): a term-weight vector has no dense encoding", {"mode": mode})


class SearchRequest(QueryInput, SearchSettings):
    """``POST /search``: one query."""

    model_config = ConfigDict(
        json_schema_extra={
            **_ONE_OF_QUERY_OR_VECTOR,
            **_EXPLAIN_CAPS_K,
            **_per_mode(batch=False),
            "examples": [
                {"query": "computer-based information retrieval", "k": 10},
                {"vector": {"retrieval": 1.4, "index": 0.7}, "k": 5, "mode": "exact", "explain": True},
            ]
        }
    )

    explain: bool = Field(False, description=f"Per hit, the matched terms and their share of the score (k <= {MAX_EXPLAIN_K}).")

    @model_validator(mode="after")
    def _explain_depth(self) -> "SearchRequest":
        _check_text(self.mode, [self.query])
        if self.explain and self.mode in TEXT_ONLY:
            raise PydanticCustomError("explain_mode", "explain shows sparse term contributions; mode '{mode}' has dense scores", {"mode": self.mode})
        if self.explain and self.k > MAX_EXPLAIN_K:
            raise PydanticCustomError("explain_k", "explain is limited to k <= {cap}, got k={k}", {"cap": MAX_EXPLAIN_K, "k": self.k})
        return self


class BatchSearchRequest(SearchSettings):
    """``POST /search/batch``: many queries with shared settings."""

    model_config = ConfigDict(
        json_schema_extra={**_per_mode(batch=True), "examples": [{"queries": [{"query": "information retrieval"}, {"vector": {"index": 1.0}}], "k": 10}]}
    )

    queries: list[QueryInput] = Field(min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _text_for_dense(self) -> "BatchSearchRequest":
        _check_text(self.mode, [q.query for q in self.queries])
        return self


class EncodeRequest(ApiModel):
    """``POST /encode``: texts to sparse vectors with the index's model."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"texts": ["sparse retrieval with learned term weights"], "kind": "query", "top": 10}]})

    texts: list[Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]] = Field(min_length=1, max_length=MAX_BATCH)
    kind: Literal["query", "document"] = Field("query", description="Queries and documents are truncated to different lengths.")
    top: Annotated[int, Field(ge=1, le=MAX_TERMS), _WHOLE_FLOAT_AS_INT] | None = Field(None, description="Keep the heaviest `top` terms of each vector (all if omitted).")


MAIN_ONLY = ("main",)


class FusedSystemInput(QueryOptions):
    """One system of a fused search: an index the server serves, searched in ``mode``."""

    model_config = ConfigDict(json_schema_extra=_per_mode(batch=False, queries=False))

    index: str = Field("main", json_schema_extra={"enum": list(MAIN_ONLY)},  # the served schema lists every name
                       description="`main` (the served index) or a name given with `lsr serve --system NAME=DIR`.")
    mode: SearchMode = Field("exact", description="Search mode of this system (dense modes need an index with a dense part).")
    weight: float | None = Field(None, gt=0, le=1000, allow_inf_nan=False,
                                 description="Its weight in the fusion (relative: above 0, at most 1000; default: the validated "
                                 "weight of its kind: BM25, learned sparse or dense).")
    knobs: dict[str, KnobValue] = Field(default_factory=dict, json_schema_extra=_KNOB_RANGES, description="The mode's knobs.")

    @model_validator(mode="after")
    def _knobs_fit_mode(self) -> "FusedSystemInput":
        try:
            self.knobs = MODES[self.mode].check_knobs(self.knobs)
        except ValueError as e:
            raise PydanticCustomError("knob", "{reason}", {"reason": str(e)}) from None
        return self


class FusedSearchRequest(ApiModel):
    """``POST /search/fused``: one text query searched by several systems, rankings fused by document id."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"query": "computer-based information retrieval", "k": 10, "fusion": "rrf",
         "systems": [{"index": "main", "weight": 1.0}, {"index": "bm25", "weight": 1.0}, {"index": "main", "mode": "dense", "weight": 0.5}]}]})

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="Query text.")
    k: Annotated[int, Field(ge=1, le=MAX_K), _WHOLE_FLOAT_AS_INT] = Field(10, description="Number of hits.")
    systems: list[FusedSystemInput] = Field(min_length=1, max_length=MAX_FUSED, description="The systems to fuse.")
    fusion: Literal["rrf", "linear"] = Field("linear", description="Weighted normalized scores, or weighted reciprocal rank fusion.")
    depth: Annotated[int, Field(ge=1, le=1000), _WHOLE_FLOAT_AS_INT] = Field(100, description="Hits taken from each system (at least k).")
    rrf_k: float | None = Field(None, ge=0, le=1000, description="RRF's constant (default 60).")
    normalization: Literal["minmax", "zscore"] | None = Field(None, description="linear: score normalization of each list (default minmax).")


class TermContribution(ApiModel):
    term: str
    query_weight: float
    doc_weight: float = Field(description="The document's stored (quantized) weight.")
    contribution: float = Field(description="query_weight x doc_weight; a hit's contributions sum to its score.")


class SettingsUsed(ApiModel):
    mode: SearchMode
    k: int
    knobs: dict[str, float | str]


class Hits(ApiModel):
    """Hits of one query, best first; ``explanations[i]`` and ``fields[i]`` belong to ``ids[i]``."""

    ids: list[str]
    scores: list[float]
    explanations: list[list[TermContribution]] | None = None
    fields: list[dict[str, Any]] | None = Field(None, description="The stored fields asked for, per hit.")
    strategy: str | None = Field(None, description="How exact search found these hits (exhaustive, blockmax, superblock), "
                                                   "as its planner chose or the `strategy` knob forced; null in other modes.")


class SearchResponse(Hits):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ids": ["17", "42"], "scores": [12.5, 9.75], "explanations": None, "took_ms": 3.2, "settings": {"mode": "exact", "k": 2, "knobs": {}}}]}
    )

    took_ms: float = Field(description="Time spent on the request in the server, queueing included.")
    settings: SettingsUsed


class FusedSearchResponse(Hits):
    took_ms: float = Field(description="Time spent on the request in the server, queueing included.")
    fusion: dict[str, Any] = Field(description="The fusion as run: method, depth, systems with their weights.")


class BatchSearchResponse(ApiModel):
    results: list[Hits] = Field(description="One entry per query, in request order.")
    took_ms: float
    settings: SettingsUsed


class EncodedVector(ApiModel):
    terms: dict[str, float] = Field(description="Token -> weight, heaviest first.")
    num_terms: int = Field(description="Non-zero terms before `top` was applied.")


class EncodeResponse(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"vectors": [{"terms": {"sparse": 2.1, "retrieval": 1.9}, "num_terms": 24}], "model": "splade-tiny", "kind": "query", "took_ms": 4.0}]}
    )

    vectors: list[EncodedVector]
    model: str
    kind: Literal["query", "document"]
    took_ms: float


class HealthResponse(ApiModel):
    status: Literal["ok"]
    num_docs: int


class LatencySummary(ApiModel):
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


class EndpointStats(ApiModel):
    requests: int
    client_errors: int = Field(description="Responses with a 4xx status.")
    server_errors: int = Field(description="Responses with a 5xx status.")
    latency: LatencySummary | None = Field(description="Since start, to within 2%; null before the first request.")


class ModelInfo(ApiModel):
    name: str = Field(description="The model named in the index manifest.")
    encoder: str = Field(description="The encoder class, e.g. SpladeEncoder or BM25Encoder.")
    vocab_size: int
    settings: dict[str, Any] = Field(description="Encoder settings recorded when the index was built.")


class ServiceStats(ApiModel):
    version: str
    pid: int = Field(description="Counters are per worker process; this one answered.")
    uptime_s: float
    queries: dict[str, int] = Field(description="Queries searched since start, per mode (a batch counts each query).")
    encoded_texts: int
    api_key_required: bool
    limits: dict[str, int]
    scheduling: dict[str, int] = Field(description="Admission queue: waiting now, shed (503), abandoned (client gone, not computed); "
                                       "micro-batching: encode_batches and batched_texts (encoder calls and the texts they encoded).")


class StatsResponse(ApiModel):
    index: dict[str, Any] = Field(description="Documents, vocabulary, postings, bytes and build settings.")
    model: ModelInfo | None = Field(description="The model encoding text queries; null for an index built from vectors.")
    service: ServiceStats
    endpoints: dict[str, EndpointStats]


class ErrorBody(ApiModel):
    type: str = Field(
        description="Stable machine-readable kind: validation_error or invalid_input (422), bad_request (400), unauthorized (401), "
        "not_found (404), method_not_allowed (405), payload_too_large (413), not_ready (503), lsr_error or internal_error (500)."
    )
    message: str
    details: Any = Field(None, description="For validation errors: a list of {loc, message, type}.")


class ErrorResponse(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": {"type": "validation_error", "message": "k: Input should be less than or equal to 1000", "details": [{"loc": ["k"], "message": "Input should be less than or equal to 1000", "type": "less_than_equal"}]}}]}
    )

    error: ErrorBody


# ---- counters ----------------------------------------------------------------------------
class _Latency:
    """Latencies in 2%-wide log buckets: percentiles since start in constant memory.

    Only the event-loop thread touches it, so it needs no lock.
    """

    _LOW = 1e-6  # seconds; the buckets span 1 us .. ~50 min
    _LOG_RATIO = math.log(1.02)
    _SIZE = 1100

    def __init__(self) -> None:
        self.counts = [0] * self._SIZE
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        i = int(math.log(seconds / self._LOW) / self._LOG_RATIO) if seconds > self._LOW else 0
        self.counts[min(i, self._SIZE - 1)] += 1
        self.n += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def percentile(self, q: float) -> float:
        rank, seen = max(1, math.ceil(q * self.n)), 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return min(self._LOW * math.exp((i + 0.5) * self._LOG_RATIO), self.max)
        return self.max

    def summary(self) -> LatencySummary | None:
        if not self.n:
            return None
        ms = {f"p{round(q * 100)}_ms": self.percentile(q) * 1e3 for q in (0.5, 0.9, 0.99)}
        return LatencySummary(**ms, mean_ms=self.total / self.n * 1e3, max_ms=self.max * 1e3)


@dataclass
class _EndpointCounters:
    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    latency: _Latency = field(default_factory=_Latency)


_TRACKED_PATHS = ("/search", "/search/batch", "/search/fused", "/encode", "/stats", "/health", "/documents", "/documents/delete", "/commit")


@dataclass
class _Stats:
    """Counters since start, updated from the event loop only."""

    started: float = field(default_factory=time.monotonic)
    endpoints: dict[str, _EndpointCounters] = field(default_factory=dict)
    queries: Counter[str] = field(default_factory=Counter)
    encoded_texts: int = 0
    commits: int = 0

    def record(self, path: str, status: int, seconds: float) -> None:
        c = self.endpoints.setdefault(path if path in _TRACKED_PATHS else "other", _EndpointCounters())
        c.requests += 1
        c.client_errors += 400 <= status < 500
        c.server_errors += status >= 500
        c.latency.add(seconds)


# ---- middleware --------------------------------------------------------------------------
class _TrackRequests:
    """Time every request and count its status for /stats (outermost, so 413s count too)."""

    def __init__(self, app: ASGIApp, stats: _Stats) -> None:
        self.app, self.stats = app, stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 499  # no response started: the client left first

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            status = 500 if status == 499 else status  # unhandled: the outer error handler answers 500
            raise
        finally:
            self.stats.record(scope["path"], status, time.perf_counter() - start)


class _BodyLimit:
    """Answer 413 to bodies over ``max_bytes`` before anything parses them.

    A declared Content-Length is checked up front; otherwise (chunked uploads) the body is
    read up to the limit and replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(scope, receive, send)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(413, "payload_too_large", f"request body is larger than {self.max_bytes} bytes")
        await response(scope, receive, send)


# ---- errors ------------------------------------------------------------------------------
def _error(status: int, kind: str, message: str, details: Any = None, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, "details": details}}, status_code=status, headers=headers)


def _detail(error: Mapping[str, Any]) -> dict[str, Any]:
    """One pydantic error as ``{loc, message, type}``, located inside the body (``["queries", 0, "query"]``)."""
    loc = list(error["loc"])
    if error["type"] == "json_invalid":  # loc is ("body", character offset)
        reason = error.get("ctx", {}).get("error", "")
        return {"loc": ["body"], "message": f"invalid JSON at character {loc[-1]}: {reason}", "type": error["type"]}
    return {"loc": loc[1:] if loc[0] == "body" and len(loc) > 1 else loc, "message": error["msg"], "type": error["type"]}


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = [_detail(e) for e in exc.errors()]
    parts = [f"{'.'.join(map(str, d['loc']))}: {d['message']}" for d in details[:3]]
    more = f" (and {len(details) - 3} more)" if len(details) > 3 else ""
    return _error(422, "validation_error", "; ".join(parts) + more, details)


_HTTP_KINDS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 503: "not_ready"}


async def _on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    headers = exc.headers
    if exc.status_code == 404 and exc.detail == "Not Found":  # the router's: no route (a handler's 404 says what)
        message = f"no endpoint at {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    else:
        message = str(exc.detail)
    kind = "overloaded" if isinstance(exc, Overloaded) else _HTTP_KINDS.get(exc.status_code, "http_error")
    return _error(exc.status_code, kind, message, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods of the routes whose path matches (the router's own Allow names only its
    first such route); a literal path (``/documents/delete``) hides a templated one."""
    matched = [route for route in request.app.router.routes
               if isinstance(route, APIRoute) and route.path_regex.match(request.url.path)]
    literal = [route for route in matched if not route.param_convertors]
    return sorted({m for route in literal or matched for m in route.methods})


async def _on_client_gone(request: Request, exc: ClientGone) -> Response:
    """Nobody reads this answer: the status only feeds /stats, as a client-side outcome."""
    return Response(status_code=499)


async def _on_bad_input(request: Request, exc: Exception) -> JSONResponse:
    """Input the schema accepts but the index cannot serve (a text query without a model, ...)."""
    if isinstance(exc, ValidationError):  # a pydantic error raised by our own code is a bug, not bad input
        return await _on_internal_error(request, exc)
    return _error(422, "invalid_input", str(exc))


async def _on_unavailable(request: Request, exc: Unavailable) -> JSONResponse:
    """A part of the index (a shard) is down for now: 503, worth retrying, never fewer hits."""
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return _error(503, "unavailable", str(exc), headers={"Retry-After": "1"})


async def _on_lsr_error(request: Request, exc: LsrError) -> JSONResponse:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return _error(500, "lsr_error", str(exc))


async def _on_internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal_error", "internal server error")


# ---- the app -----------------------------------------------------------------------------
def _rows(vectors: Any) -> list[Any]:
    """A batch of encoded queries as one single-row batch per query."""
    return [vectors.take([i]) for i in range(len(vectors))]



T = TypeVar("T")


@dataclass
class _State:
    """What requests share; ``retriever`` is set once the startup has loaded and warmed it."""

    retriever: Retriever | None = None
    others: dict[str, Retriever] = field(default_factory=dict)  # the --system indexes, by name
    admission: Admission | None = None
    batcher: QueryBatcher | None = None
    batch_lock: threading.Lock = field(default_factory=threading.Lock)


def _open(source: str | os.PathLike | Retriever) -> Retriever:
    """Load the index (memory-mapped) and its model, and run one query through every mode it
    serves, single and batched, so that the first request pays for no compilation."""
    start = time.perf_counter()
    retriever = source if isinstance(source, Retriever) else Retriever.load(source, mmap=True)
    if retriever.model:
        retriever.encoder  # noqa: B018 - loads the model
        probe: Query = "warm up"
    elif retriever.vocab:
        probe = {retriever.vocab[0]: 1.0}
    else:
        return retriever
    if not retriever.segments.indexes:
        return retriever  # an empty collection: no kernel to warm up (and it claims every part, dense included)
    for name, mode in MODES.items():
        if not mode.needs <= retriever.segments.parts or (mode.text_only and not isinstance(probe, str)):
            continue  # a mode this index cannot serve: requests for it get a clear 422
        for batch in ([probe], [probe, probe]):  # the single-query path and the parallel batch kernel
            retriever.search_encoded(retriever.encode(batch, name), 1, mode=name)
    log.info("index %s ready: %d documents, model %s, %.1f s", retriever.path, retriever.num_docs, retriever.model, time.perf_counter() - start)
    return retriever


def _search(retriever: Retriever, body: SearchRequest, encoded: Any = None) -> Hits:
    if encoded is None:
        encoded = retriever.encode([body.as_query()], body.mode, **body.query_options())
    [result] = retriever.search_encoded(encoded, body.k, mode=body.mode, threads=1, **body.where(), **body.knobs)
    explanations = None
    if body.explain:
        query = encoded.to_dict(0)  # the encoded text, so the model runs once, not once per hit
        explanations = [[TermContribution(**e) for e in retriever.explain(query, d)] for d in result.ids]
    return Hits(ids=result.ids, scores=result.scores, explanations=explanations, fields=result.fields, strategy=result.strategy)


def _encode(retriever: Retriever, body: EncodeRequest) -> list[EncodedVector]:
    encoder = retriever.encoder
    if body.kind == "document" and not encoder.per_document:
        raise DataError(f"the {encoder.name} encoder cannot weigh a lone document: its document weights depend on the whole collection")
    vectors = (encoder.encode_queries if body.kind == "query" else encoder.encode_documents)(body.texts)
    out = []
    for i in range(len(vectors)):
        terms = vectors.to_dict(i)
        top = dict(list(terms.items())[: body.top]) if body.top else terms
        out.append(EncodedVector(terms=top, num_terms=len(terms)))
    return out


def create_app(
    index: str | os.PathLike | Retriever,
    *,
    api_key: str | None = None,
    public_reads: bool = False,
    cors_origins: Sequence[str] = (),
    limits: Limits = Limits(),
    writable: bool = False,
    systems: Mapping[str, str | os.PathLike | Retriever] | None = None,
) -> FastAPI:
    """The API over ``index`` (a directory, loaded at startup, or an open Retriever).

    ``systems`` are more indexes by name (a BM25 index beside a SPLADE one...), searched only
    by ``POST /search/fused``, which fuses the rankings of any of them and ``main``.

    ``writable`` (a collection directory) takes its write lock and adds the write endpoints
    (:mod:`lsr.service.writes`), which need the API key whenever one is set.

    With ``api_key`` set, requests need it in the ``X-API-Key`` header, except ``/health``
    and the docs; ``public_reads`` leaves searching, encoding and stats open (endpoints that
    change state always need the key). CORS is off unless ``cors_origins`` are given.
    """
    state, stats = _State(), _Stats()
    auto_commit: list[Callable[[Retriever], Any]] = []

    def load() -> Retriever:
        if not writable:
            return _open(index)
        if not isinstance(index, (str, os.PathLike)):
            raise LsrError("a writable server opens the collection itself: give its directory")
        return _open(Retriever(Collection.open(index, writable=True)))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.admission = Admission(limits.max_concurrency, limits.queue_depth, limits.queue_timeout_ms / 1000)
        state.retriever = await anyio.to_thread.run_sync(load)
        for name, source in (systems or {}).items():
            state.others[name] = await anyio.to_thread.run_sync(_open, source)
        async with anyio.create_task_group() as tasks:
            if writable:
                tasks.start_soon(auto_commit[0], state.retriever)
            if limits.batch_wait_ms > 0 and state.retriever.model:
                retriever = state.retriever
                state.batcher = QueryBatcher(lambda texts: _rows(retriever.encode_queries(texts)), partial(in_thread, ticket=UNQUEUED),
                                             max_batch=limits.batch_max, max_wait_s=limits.batch_wait_ms / 1000,
                                             parallel=limits.max_concurrency)
                tasks.start_soon(state.batcher.serve)
            yield
            tasks.cancel_scope.cancel()
        if writable:
            state.retriever.collection.close()  # buffered, uncommitted changes are dropped, as documented
        state.retriever = None

    app = FastAPI(
        title="lsr",
        version=__version__,
        summary="Learned sparse retrieval: search an inverted index of SPLADE vectors.",
        lifespan=lifespan,
        docs_url=None,  # served below, behind the same key as the reads
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body_bytes)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"], allow_headers=[API_KEY_HEADER, "Content-Type"])
    app.add_middleware(_TrackRequests, stats=stats)
    app.add_exception_handler(RequestValidationError, _on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientGone, _on_client_gone)  # type: ignore[arg-type]
    app.add_exception_handler(DataError, _on_bad_input)
    app.add_exception_handler(ValueError, _on_bad_input)
    app.add_exception_handler(Unavailable, _on_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(LsrError, _on_lsr_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_internal_error)

    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Required when the server has LSR_API_KEY set.")

    async def require_key(given: str | None = Security(header)) -> None:
        """Constant-time comparison, so response times do not leak how much of a guess matched."""
        if api_key is not None and not (given and hmac.compare_digest(given.encode(), api_key.encode())):
            raise HTTPException(401, f"missing or wrong API key (header {API_KEY_HEADER})", headers={"WWW-Authenticate": "ApiKey"})

    async def ready_index() -> Retriever:  # async: a plain def would cost a hop to the thread pool
        if state.retriever is None:
            raise HTTPException(503, "the index is not loaded yet")
        return state.retriever

    def pinned(fn: Callable[..., T], *args: Any) -> T:
        # Torch's thread count is per thread under OpenMP, and Numba's parallel batch kernels
        # (same OpenMP runtime) reset it to theirs: set it again where the work runs.
        if limits.encoder_threads is not None and torch.get_num_threads() != limits.encoder_threads:
            torch.set_num_threads(limits.encoder_threads)
        return fn(*args)

    async def in_thread(fn: Callable[..., T], *args: Any, request: Request | None = None, ticket: Ticket | None = None) -> T:
        """``fn(*args)`` on a worker thread, through the admission queue (503 when it is full)."""
        return await state.admission.run(pinned, fn, *args, is_disconnected=request.is_disconnected if request else None, ticket=ticket)

    read_key = [Depends(require_key)] if api_key is not None and not public_reads else []
    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "The body cannot be read (e.g. not UTF-8)."},
        413: {"model": ErrorResponse, "description": "Request body too large."},
        422: {"model": ErrorResponse, "description": "Invalid request: the message names the field."},
        503: {"model": ErrorResponse, "description": "The index is still loading."},
    }
    if read_key:
        errors[401] = {"model": ErrorResponse, "description": f"Missing or wrong {API_KEY_HEADER}."}
    IndexDep = Annotated[Retriever, Depends(ready_index)]

    write_key = [Depends(require_key)] if api_key is not None else []
    if writable:
        auto_commit.append(writes.register(app, ready=ready_index, in_thread=in_thread, read_key=read_key, write_key=write_key,
                                           errors=errors, limits=limits, stats=stats))

    @app.post("/search", response_model=SearchResponse, responses=errors, dependencies=read_key, tags=["search"])
    async def search(body: SearchRequest, index: IndexDep, request: Request) -> SearchResponse:
        """Top-k documents for a text or a `{term: weight}` query, optionally explained."""
        start = time.perf_counter()
        encoded = None
        with state.admission.enter() as ticket:  # queued from arrival: the wait for the batched encoding counts
            if state.batcher is not None and body.query is not None and not MODES[body.mode].text_only and not body.query_options():
                # shares one model call with concurrent requests
                encoded = await state.admission.within(ticket, state.batcher.encode(body.query, request.is_disconnected))
            hits = await in_thread(_search, index, body, encoded, request=request, ticket=ticket)
        stats.queries[body.mode] += 1
        return SearchResponse(**dict(hits), took_ms=(time.perf_counter() - start) * 1e3, settings=body.used())

    @app.post("/search/batch", response_model=BatchSearchResponse, responses=errors, dependencies=read_key, tags=["search"])
    async def search_batch(body: BatchSearchRequest, index: IndexDep) -> BatchSearchResponse:
        """Top-k for many queries at once; encodes the texts together and searches in parallel."""

        def run() -> list[SearchResult]:
            encoded = index.encode([q.as_query() for q in body.queries], body.mode, **body.query_options())
            # The batch kernels already use every core, and Numba's fallback thread pool
            # (workqueue) must not be entered by two threads at once.
            with state.batch_lock:
                return index.search_encoded(encoded, body.k, mode=body.mode, **body.where(), **body.knobs)

        start = time.perf_counter()
        results = await in_thread(run)
        stats.queries[body.mode] += len(results)
        return BatchSearchResponse(
            results=[Hits(ids=r.ids, scores=r.scores, fields=r.fields, strategy=r.strategy) for r in results],
            took_ms=(time.perf_counter() - start) * 1e3,
            settings=body.used(),
        )

    @app.post("/search/fused", response_model=FusedSearchResponse, responses=errors, dependencies=read_key, tags=["search"])
    async def search_fused(body: FusedSearchRequest, index: IndexDep) -> FusedSearchResponse:
        """Top-k of several systems' rankings fused by document id (weighted RRF or linear)."""
        served = {"main": index, **state.others}
        unknown = [s.index for s in body.systems if s.index not in served]
        if unknown:
            raise DataError(f"unknown system index {unknown[0]!r}; this server has: {', '.join(served)} (add more with `lsr serve --system NAME=DIR`)")
        fusion = Fusion([FusedSystem(served[s.index], default_weight(served[s.index].model, s.mode) if s.weight is None else s.weight,
                                     s.mode, s.knobs, s.query_options(), f"{s.index}:{s.mode}") for s in body.systems],
                        fusion=body.fusion, depth=body.depth, rrf_k=body.rrf_k, normalization=body.normalization)
        start = time.perf_counter()
        [result] = await in_thread(fusion.search_batch, [body.query], body.k)
        stats.queries["fused"] += 1
        return FusedSearchResponse(ids=result.ids, scores=result.scores, took_ms=(time.perf_counter() - start) * 1e3, fusion=fusion.describe())

    @app.post("/encode", response_model=EncodeResponse, responses=errors, dependencies=read_key, tags=["encode"])
    async def encode(body: EncodeRequest, index: IndexDep) -> EncodeResponse:
        """Sparse vectors of texts under the index's model, as readable tokens."""
        start = time.perf_counter()
        vectors = await in_thread(_encode, index, body)
        stats.encoded_texts += len(body.texts)
        return EncodeResponse(vectors=vectors, model=index.model, kind=body.kind, took_ms=(time.perf_counter() - start) * 1e3)

    @app.get("/stats", response_model=StatsResponse, responses=errors, dependencies=read_key, tags=["service"])
    async def get_stats(index: IndexDep) -> StatsResponse:
        """Index and model facts, request counters and latency percentiles since start."""
        model = None
        if index.model:
            enc = index.encoder
            model = ModelInfo(name=index.model, encoder=type(enc).__name__, vocab_size=len(enc.vocab), settings=index.manifest.get("encoder", {}))
        return StatsResponse(
            index=index.info(),
            model=model,
            service=ServiceStats(
                version=__version__,
                pid=os.getpid(),
                uptime_s=time.monotonic() - stats.started,
                queries=dict(stats.queries),
                encoded_texts=stats.encoded_texts,
                api_key_required=bool(read_key),
                scheduling={
                    "waiting": state.admission.waiting, "shed": state.admission.shed,
                    "abandoned": state.admission.abandoned + (state.batcher.abandoned if state.batcher else 0),
                    "encode_batches": state.batcher.batches if state.batcher else 0,
                    "batched_texts": state.batcher.texts if state.batcher else 0,
                },
                limits={
                    "max_k": MAX_K, "max_explain_k": MAX_EXPLAIN_K, "max_query_chars": MAX_QUERY_CHARS,
                    "max_terms": MAX_TERMS, "max_batch": MAX_BATCH, "max_text_chars": MAX_TEXT_CHARS,
                    "max_body_bytes": limits.max_body_bytes, "max_concurrency": limits.max_concurrency,
                    "encoder_threads": limits.encoder_threads or torch.get_num_threads(),
                },
            ),
            endpoints={
                path: EndpointStats(requests=c.requests, client_errors=c.client_errors, server_errors=c.server_errors, latency=c.latency.summary())
                for path, c in stats.endpoints.items()
            },
        )

    @app.get("/health", response_model=HealthResponse, responses={503: errors[503]}, tags=["service"])
    async def health(index: IndexDep) -> HealthResponse:
        """200 once the index and model are loaded and warm; 503 before (open to all)."""
        return HealthResponse(status="ok", num_docs=index.num_docs)

    @app.head("/health", include_in_schema=False)
    async def health_head(index: IndexDep) -> Response:
        """What load balancers probe with: the status of GET /health, no body."""
        return Response(status_code=200)

    def openapi() -> dict[str, Any]:
        """The schema, once the index is loaded offering only the modes it can serve."""
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        if state.retriever is None:
            return schema  # not cached: the modes are known once the index is loaded
        served = {tuple(MODES): served_modes(state.retriever), QUERY_ENCODER_NAMES: served_query_encoders(state.retriever),
                  MAIN_ONLY: ["main", *state.others]}
        app.openapi_schema = _only_served(schema, served, unserved_knobs(state.retriever))
        collection = state.retriever.collection
        if collection is not None and collection.settings.get("dense"):
            _documents_need_text(app.openapi_schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def page(index: IndexDep) -> HTMLResponse:
        """The search page (see :mod:`lsr.service.page`): its searches send the key themselves."""
        return HTMLResponse(search_page(served_modes(index), TEXT_ONLY, MAX_EXPLAIN_K))

    @app.get("/openapi.json", include_in_schema=False, dependencies=read_key)
    async def openapi_json(index: IndexDep) -> JSONResponse:
        """The schema of what the loaded index serves (503 while it loads, like the searches)."""
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=read_key)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="lsr API")

    return app


def served_modes(retriever: Retriever) -> list[str]:
    """The modes whose parts every segment of the index has."""
    return [name for name, mode in MODES.items() if mode.needs <= retriever.segments.parts]


def unserved_knobs(retriever: Retriever) -> set[str]:
    """Knobs of a kind of dense part (``ef_search``, ``nprobe``) that not every segment has."""
    kinds = {ix.dense.settings.get("kind") if ix.dense is not None else None for ix in retriever.segments.indexes}
    return {knob for kind, knob in KIND_KNOBS.items() if kinds != {kind}}


def served_query_encoders(retriever: Retriever) -> list[str]:
    """The query encoders (``query_encoder`` values) this index can build."""
    served = []
    for name in QUERY_ENCODER_NAMES:
        try:
            retriever.query_encoder(name)
        except (LsrError, ValueError, OSError):
            continue
        served.append(name)
    return served


def _documents_need_text(schema: dict[str, Any]) -> None:
    """A collection with a dense part encodes each document's title and text with its dense
    model, so ``POST /documents`` offers no vectors there."""
    doc = schema.get("components", {}).get("schemas", {}).get("DocumentIn")
    if doc:
        doc["properties"].pop("vector", None)


def _only_served(schema: Any, served: dict[tuple[str, ...], list[str]], hidden: set[str]) -> Any:
    """``schema`` with each full enum (the keys of ``served``: modes, query encoders) narrowed
    to what the index serves, the rules of unserved modes dropped and the ``hidden`` knobs left
    out, so that every request it allows is one the index serves."""
    modes = served[tuple(MODES)]
    if isinstance(schema, list):
        return [_only_served(x, served, hidden) for x in schema
                if not (isinstance(x, dict) and (const := x.get("if", {}).get("properties", {}).get("mode", {}).get("const"))
                        and const not in modes)]
    if isinstance(schema, dict):
        if isinstance(schema.get("enum"), list) and tuple(schema["enum"]) in served:
            return {**schema, "enum": list(served[tuple(schema["enum"])])}
        if isinstance(schema.get("properties"), dict):  # knob names are field names of nothing else
            schema = {**schema, "properties": {n: v for n, v in schema["properties"].items() if n not in hidden}}
        return {key: _only_served(value, served, hidden) for key, value in schema.items()}
    return schema
