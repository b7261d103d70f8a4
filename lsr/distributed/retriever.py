"""Sharded search on Ray: one actor per shard, a query encoded once at the front, fanned out,
and the per-shard top-k merged into the exact global top-k.

The front is a :class:`~lsr.retrieval.Retriever` (so the CLI, the service and the evaluation
take it as one) whose encoders and settings come from shard 0: every shard has the same model,
settings and, at build time, the same vocabulary (a growing vocabulary only appends, so the
build's terms keep their ids in every shard). A shard actor (:class:`ShardServer`) holds its
collection memory-mapped and answers hits with their tie keys (corpus positions, see
:mod:`lsr.distributed.layout`); the front merges them by (score descending, key ascending).

- ``exact``, ``exhaustive``, ``approx`` and ``dense``: each shard's top k, merged. Exact and
  exhaustive equal the unsharded index's result, ties included; approx is each shard's
  approximate top k (no worse than one index's, as each shard sees a k-th score at least as
  high as its part of the global one would); dense equals it with a flat faiss index.
- ``hybrid``: the global sparse top ``depth`` and the global dense top ``depth``, each merged
  from the shards, fused at the front, so the fusion sees the lists one index would fuse.
- filters and stored fields are evaluated by each shard on its own documents.
- writes go to the shard owning the id (:func:`~lsr.distributed.layout.shard_of`); each shard
  commits atomically, shards one after the other.

Transport: Ray places, restarts and addresses the shard actors and carries writes and rare
calls; searches bypass Ray's per-call machinery (~0.6 ms a call here, more than a search): each
shard actor, on every (re)start, serves them on a socket of its own, and each front thread keeps
one connection per shard (:mod:`lsr.distributed.wire`). A plain sparse top-k (no filter or
stored fields) goes as a binary SEARCH frame answered by a HITS frame (:func:`_search_frame`,
:func:`_hits_arrays`); any other search as JSON.

Faults: a shard actor that dies is restarted by Ray (``max_restarts``) and reloads its
collection; its connections break, and the front asks the restarted actor for its new address.
A search meanwhile raises :class:`ShardsUnavailable` naming the shards, or, with
``allow_partial=True``, returns the other shards' merged hits as :class:`ShardedResult` with
``partial=True`` and ``missing`` naming the absent shards: never silently fewer hits.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsr.data import Document
from lsr.data.vectors import SparseVectors
from lsr.distributed.cluster import connect
from lsr.distributed import wire
from lsr.distributed.layout import Layout, shard_of
from lsr.distributed.wire import Listener
from lsr.errors import DataError, LsrError, Unavailable
from lsr.index.modes import SPARSE_MODES
from lsr.index.segments import Segments
from lsr.data.files import check_text
from lsr.data.filters import check_filter
from lsr.index.sparse import check_k
from lsr.retrieval import Retriever, SearchResult
from lsr.retrieval.collection import Collection
from lsr.retrieval.hybrid import HybridQueries, dense_knobs, faiss_knobs_of, fuse
from lsr.retrieval.modes import get_mode
from lsr.retrieval.retriever import check_fields

# Tie keys of documents written after the build (not in a shard's first segment) follow every
# built document's: LATE + row in the shard * shards + shard.
LATE = 1 << 50
FAST_MODES = tuple(SPARSE_MODES)  # the modes a SEARCH frame carries, by their position here


class _Down(Exception):
    """A shard could not be reached (the message says why)."""


class ShardsUnavailable(Unavailable):
    """Some shards did not answer (their actor died, is restarting, or timed out)."""

    def __init__(self, missing: Mapping[str, str]) -> None:
        self.missing = dict(missing)
        detail = "; ".join(f"{name}: {why}" for name, why in self.missing.items())
        super().__init__(f"{len(self.missing)} shard(s) unavailable ({detail}): search again once Ray has restarted "
                         "them, or pass allow_partial=True to take the other shards' hits, flagged partial")


@dataclass(frozen=True)
class ShardedResult(SearchResult):
    """A SearchResult that says whether every shard answered (``missing``: those that did not)."""

    partial: bool = False
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShardHits:
    """One query's hits from one shard: tie keys, scores, ids (and stored fields)."""

    keys: np.ndarray
    scores: np.ndarray
    ids: list[str]
    fields: list[dict[str, Any]] | None
    dense_fraction: float | None


class ShardServer:
    """What one shard actor runs: its collection opened read-only (memory-mapped), searched as
    the front asks; opened for writing too on the first write (the shard's one writer)."""

    def __init__(self, path: str, positions: str, segment: str, shard: int, num_shards: int, build_vocab: int,
                 front_node: str) -> None:
        self.shard, self.num_shards, self.segment = shard, num_shards, segment
        self.retriever = Retriever.load(path)
        self.positions = np.asarray(np.load(positions, mmap_mode="r"))  # a plain array on the mapping: no memmap per lookup
        self.build_vocab = build_vocab
        self.writer: Collection | None = None
        self._warm_up()
        import ray

        # loopback when the front runs on this node, else the address Ray's own workers use here
        local = ray.get_runtime_context().get_node_id() == front_node
        self.listener = Listener(self._serve, self._serve_frame, "127.0.0.1" if local else ray.util.get_node_ip_address())

    def address(self) -> tuple[str, int, str]:
        """Where this actor serves searches (:mod:`lsr.distributed.wire`): host, port, token."""
        return self.listener.address

    def _warm_up(self) -> None:
        """Run each sparse mode the shard serves once, so that the kernels are compiled (or
        loaded from Numba's cache) before the front counts the shard as ready."""
        snap = self.retriever.segments
        if not snap.num_rows or not snap.vocab:
            return
        probe = SparseVectors(np.array([0, 1]), np.array([0], np.int32), np.array([1.0], np.float32), snap.vocab)
        for mode in ("exact", "exhaustive", "approx"):
            if get_mode(mode).needs <= snap.parts:
                snap.search(probe, 1, mode=mode)

    def ping(self) -> dict[str, Any]:
        snap = self.retriever.segments
        return {"pid": os.getpid(), "num_docs": snap.num_docs, "generation": snap.generation}

    def info(self) -> dict[str, Any]:
        return self.retriever.info()

    # ---- search -------------------------------------------------------------------------
    def search(self, requests: Sequence[Mapping[str, Any]]) -> list[list[ShardHits]]:
        """Each request: ``queries`` (see :meth:`_queries`), ``k``, ``mode``, ``knobs``,
        ``threads``, ``filter``, ``fields``, ``snippet``; per request, per query, the hits."""
        return [self._search(**r) for r in requests]

    def _serve(self, requests: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
        """:meth:`search` for the listener: the hits as plain values."""
        return [[vars(h) for h in hits] for hits in self.search(requests)]

    def _serve_frame(self, frame: wire.Arrays) -> list[np.ndarray]:
        """:meth:`search` for the listener's SEARCH frames: the hits as HITS arrays."""
        return _hits_arrays(self._search(**_request_of(frame)))

    def _search(self, queries: Mapping[str, Any], k: int, mode: str, knobs: Mapping[str, Any], threads: int | None = None,
                filter: Mapping[str, Any] | None = None, fields: Sequence[str] | None = None,
                snippet: int | None = None) -> list[ShardHits]:
        r = self.retriever
        snap = r.segments
        snap, hits = r.search_rows(self._queries(queries, snap), k, mode=mode, threads=threads, filter=filter, snap=snap, **knobs)
        out = []
        for h in hits:
            rows = np.asarray(h.rows, dtype=np.int64)
            out.append(ShardHits(self._keys(snap, rows), np.asarray(h.scores, dtype=np.float64), snap.doc_ids(rows),
                                 r.collection.fields(rows, snap, fields, snippet) if fields else None,
                                 getattr(h, "dense_fraction", None)))
        return out

    def _queries(self, q: Mapping[str, Any], snap: Segments) -> SparseVectors | HybridQueries | None:
        """Sparse rows sent as arrays over the build vocabulary (its ids are valid in every
        shard), terms past it by name; a dense matrix as it is."""
        sparse = None
        if q.get("indptr") is not None:
            indptr, indices = np.asarray(q["indptr"], np.int64), np.asarray(q["indices"], np.int32)
            values = np.asarray(q["values"], np.float32)
            if q.get("late"):  # terms the front learned after the build: this shard's ids for them, or dropped
                ids, late = {t: i for i, t in enumerate(snap.vocab[self.build_vocab:], start=self.build_vocab)}, dict(q["late"])
                indices = np.array([ids.get(late[t], -1) if t >= self.build_vocab else t for t in indices.tolist()],
                                   dtype=np.int32)
                keep = indices >= 0
                indptr = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)[indptr]
                indices, values = indices[keep], values[keep]
            sparse = SparseVectors(indptr, indices, values, snap.vocab)
        if q.get("dense") is not None:
            return HybridQueries(sparse, q["dense"])
        return sparse

    def _keys(self, snap: Segments, rows: np.ndarray) -> np.ndarray:
        """Tie keys: the corpus position of a row of the first segment, else LATE + its order."""
        names = snap.names  # type: ignore[attr-defined]
        base = names.index(self.segment) if self.segment in names else -1
        if base == 0 and len(names) == 1:
            return np.asarray(self.positions[rows], dtype=np.int64)
        keys = np.empty(len(rows), dtype=np.int64)
        for i, row in enumerate(rows.tolist()):
            s, r = snap.locate(row)
            keys[i] = self.positions[r] if s == base else LATE + row * self.num_shards + self.shard
        return keys

    def explain(self, query: Mapping[str, float], doc_id: str) -> list[dict[str, Any]]:
        return self.retriever.explain(dict(query), doc_id)

    # ---- writes -------------------------------------------------------------------------
    def _writer(self) -> Collection:
        if self.writer is None:
            self.writer = Collection.open(self.retriever.path, writable=True)
        return self.writer

    def live(self, ids: Sequence[str]) -> list[str]:
        return list(self.retriever.collection.store.live(list(ids)).keys())

    def get(self, doc_id: str) -> Any:
        return self.retriever.collection.get(doc_id)

    def add(self, docs: Sequence[Document], upsert: bool) -> int:
        return self._writer().add(docs, upsert=upsert)

    def delete(self, ids: Sequence[str]) -> dict[str, list[str]]:
        return self._writer().delete(ids)

    def commit(self) -> int | None:
        return self._writer().commit() if self.writer is not None and self.writer.pending else None


class ShardedRetriever(Retriever):
    """Search a sharded directory (:func:`lsr.distributed.build.build_sharded`) through one Ray
    actor per shard; everything else (encoders, modes, knobs, checks) is a Retriever's.

    ``ray``: ``local`` (start a private cluster if this process has none), ``auto`` or an
    address. ``max_restarts``: how often Ray restarts a dead shard actor (which reloads its
    collection); ``timeout_s``: how long a search waits for a shard before counting it missing;
    ``num_cpus``: CPUs each shard actor reserves (0 packs them on one machine; more spreads
    them over a cluster's nodes). The directory must be readable at the same path from every
    node an actor runs on (a shared file system, or each node holding its shards there).
    """

    def __init__(self, path: str | os.PathLike, *, ray: str | None = "local", max_restarts: int = 3,
                 timeout_s: float = 30.0, num_cpus: float = 0, allow_partial: bool = False, **encoders: Any) -> None:
        self.layout = Layout.read(path)
        super().__init__(Collection.open(self.layout.shard_path(0)), **encoders)
        self._ray = connect(ray)
        self.timeout_s = timeout_s
        self.allow_partial = allow_partial
        self._call = threading.local()  # this thread's allow_partial and shard connections
        self._links_lock = threading.Lock()
        self._all_links: list[list[socket.socket | None]] = []
        self._seqs = itertools.count()  # numbers each fan-out; a reply must carry its request's
        self._build_vocab = int(self.layout.manifest["vocab_size"])
        actor = self._ray.remote(ShardServer).options(num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=0,
                                                       scheduling_strategy="SPREAD")
        shards, front = self.layout.manifest["shards"], self._ray.get_runtime_context().get_node_id()
        self.actors = [actor.remote(str(self.layout.shard_path(s)), str(self.layout.positions_path(s)), shards[s]["segment"],
                                    s, self.layout.num_shards, self._build_vocab, front) for s in range(self.layout.num_shards)]
        self._gather([a.ping.remote() for a in self.actors], timeout_s=max(timeout_s, 600.0))  # every shard loaded, or one clear error

    # ---- facts --------------------------------------------------------------------------
    @property
    def path(self):  # type: ignore[override]
        return self.layout.path

    @property
    def manifest(self) -> dict[str, Any]:
        return self.layout.manifest

    @property
    def shard_names(self) -> list[str]:
        return self.layout.names

    def ping(self) -> list[dict[str, Any]]:
        """Every shard's pid, live documents and generation (ShardsUnavailable if one is down)."""
        return self._gather([a.ping.remote() for a in self.actors])[0]

    @property
    def num_docs(self) -> int:  # type: ignore[override]
        return sum(p["num_docs"] for p in self.ping())

    @property
    def index(self):  # type: ignore[override]
        raise LsrError(f"{self.path} is sharded: it has no single index (search it, or open one shard's collection)")

    @property
    def doc_ids(self) -> list[str]:  # type: ignore[override]
        raise LsrError(f"{self.path} is sharded: its ids live in its {self.layout.num_shards} shards")

    def info(self) -> dict[str, Any]:
        shards = self._gather([a.info.remote() for a in self.actors])[0]
        keys = ("num_docs", "deleted_docs", "num_postings", "bytes")
        return {"path": str(self.path), "sharded": True, "num_shards": self.layout.num_shards, "routing": self.manifest["routing"],
                "model": self.model, "encoder": self.manifest.get("encoder"), "settings": self.manifest["settings"],
                "approx": self.manifest.get("approx"), "dense": self.manifest.get("dense"), "vocab_size": len(self.vocab),
                **{k: sum(int(s.get(k) or 0) for s in shards) for k in keys},
                "shards": [{"name": n, **{k: s.get(k) for k in (*keys, "generation")}, "segments": len(s.get("segments") or [])}
                           for n, s in zip(self.shard_names, shards)]}

    # ---- search -------------------------------------------------------------------------
    def search_rows(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        raise LsrError("a sharded index has no global rows: use search_encoded")

    def search_batch(self, queries: Sequence[Any], k: int = 10, *, allow_partial: bool | None = None,
                     **options: Any) -> list[ShardedResult]:  # type: ignore[override]
        """:meth:`Retriever.search_batch`; ``allow_partial`` (default: the retriever's) see the module."""
        self._call.allow_partial = allow_partial
        try:
            return super().search_batch(queries, k, **options)  # type: ignore[return-value]
        finally:
            self._call.allow_partial = None

    def search_encoded(self, queries: Any, k: int = 10, *, mode: str = "exact", threads: int | None = None,
                       filter: Mapping[str, Any] | None = None, fields: Sequence[str] | None = None,
                       snippet: int | None = None, allow_partial: bool | None = None, **knobs: Any) -> list[ShardedResult]:
        """:meth:`Retriever.search_encoded` over every shard, merged; ``allow_partial`` (default:
        the retriever's) see the module."""
        spec = get_mode(mode)
        spec.check_knobs(knobs)
        check_k(k, 1)
        check_fields(fields, snippet)
        if filter is not None:
            check_filter(filter)
        if allow_partial is None:
            allow_partial = getattr(self._call, "allow_partial", None)
        allow_partial = self.allow_partial if allow_partial is None else allow_partial
        if mode == "selective":
            raise DataError("mode 'selective' picks dense clusters per index, which a sharded index cannot do as one: use hybrid")
        common = {"threads": threads, "filter": filter, "fields": fields, "snippet": snippet}
        if mode == "hybrid":
            full, weights = dense_knobs(mode, knobs, len(queries))
            depth = max(full["depth"], k)
            requests = [{"queries": self._wire(queries.sparse, None), "k": depth, "mode": "exact", "knobs": {}, **common},
                        {"queries": self._wire(None, queries.dense), "k": depth, "mode": "dense", "knobs": faiss_knobs_of(full), **common}]
        else:
            if mode == "dense" and not isinstance(queries, HybridQueries):
                raise DataError(f"mode {mode!r} searches queries encoded for it (Retriever.encode(queries, {mode!r}))")
            wire = self._wire(None, queries.dense) if mode == "dense" else self._wire(self._sparse(queries, mode), None)
            requests = [{"queries": wire, "k": k, "mode": mode, "knobs": dict(knobs), **common}]
        answers, missing = self._fan_out(requests, allow_partial)
        flags = {"partial": bool(missing), "missing": tuple(missing)}
        if mode != "hybrid":
            return [_result(_merge([a[0][i] for a in answers], k), **flags) for i in range(len(queries))]
        out = []
        for i in range(len(queries)):
            sparse, dense = _merge([a[0][i] for a in answers], depth), _merge([a[1][i] for a in answers], depth)
            rows, scores = fuse((sparse.keys, sparse.scores), (dense.keys, dense.scores), k, full, weights[i])
            place = {key: (dense, j) for j, key in enumerate(dense.keys.tolist())}
            place.update({key: (sparse, j) for j, key in enumerate(sparse.keys.tolist())})
            place = [place[key] for key in rows.tolist()]
            fractions = [a[1][i].dense_fraction for a in answers]
            out.append(ShardedResult([h.ids[j] for h, j in place], np.asarray(scores).tolist(),
                                     1.0 if fractions and all(f == 1.0 for f in fractions) else None,
                                     [h.fields[j] for h, j in place] if fields else None, **flags))
        return out

    def encode_queries(self, queries: Sequence[Any], **query: Any) -> SparseVectors:
        """Queries as sparse rows (``query``: the text options of :meth:`Retriever.encode_queries`).
        Over a growing vocabulary (BM25) the shards' vocabularies part after the build (each
        learns the terms of its own new documents), so a BM25 query term that shard 0, the
        front's, lacks is kept by name for the shards that hold it."""
        if (any(v is not None for v in query.values()) or not self.manifest.get("growing_vocab") or not self.model
                or not hasattr(self.encoder, "query_terms")):
            return super().encode_queries(queries, **query)
        for q in queries:
            if not isinstance(q, (str, Mapping)):
                raise TypeError(f"a query is a text or a {{term: weight}} mapping, got {type(q).__name__}")
        bags = [self.encoder.query_terms(check_text(q, f"query {i}")) if isinstance(q, str) else q for i, q in enumerate(queries)]
        known = self._term_positions()
        unknown = sorted({t for bag in bags for t in bag if t not in known})
        vocab = [*self.vocab, *unknown] if unknown else self.vocab
        ids = {**known, **{t: len(known) + i for i, t in enumerate(unknown)}} if unknown else known
        return SparseVectors.from_dicts(bags, vocab, source="query", term_ids=ids)

    def _sparse(self, queries: Any, mode: str) -> SparseVectors:
        if not isinstance(queries, SparseVectors):
            raise DataError(f"mode {mode!r} searches sparse query rows, got {type(queries).__name__}")
        return queries

    def _wire(self, sparse: SparseVectors | None, dense: np.ndarray | None) -> dict[str, Any]:
        """Queries as plain arrays (a vocabulary is not sent along: the shards know it); ids of
        terms past the build vocabulary go with their names."""
        if sparse is None:
            return {"dense": np.asarray(dense, dtype=np.float32)}
        indices = np.asarray(sparse.indices, dtype=np.int32)
        past = indices >= self._build_vocab
        late = [(t, sparse.vocab[t]) for t in np.unique(indices[past]).tolist()] if past.any() else []
        return {"indptr": np.asarray(sparse.indptr), "indices": indices, "values": np.asarray(sparse.values), "late": late,
                "dense": None if dense is None else np.asarray(dense, dtype=np.float32)}

    def _fan_out(self, requests: list[dict[str, Any]], allow_partial: bool) -> tuple[list[Any], list[str]]:
        """Every shard's answer to ``requests`` (:meth:`ShardServer.search`) over this thread's
        connections (:mod:`lsr.distributed.wire`), and the missing shards. The request goes to
        every shard before any reply is read, so the shards search in parallel. A connection
        that fails or times out makes its shard missing (an error unless ``allow_partial``) and
        is dropped, as is any left unread (so no later search reads a stale reply): the next
        search asks the actor (restarted, maybe) for its address again. A shard whose search
        raised is asked again by an actor call, which carries the error."""
        seq = next(self._seqs)
        fast = _search_frame(seq, requests)
        frame, expect = (fast, wire.HITS) if fast is not None else (wire.pack(wire.REQUEST, [seq, requests]), wire.REPLY)
        deadline = time.monotonic() + self.timeout_s
        links, names = self._links(), self.shard_names
        missing: dict[int, str] = {}
        unread: set[int] = set()
        try:
            for s, link in enumerate(links):
                try:
                    if link is None:
                        link = links[s] = self._connect(s, deadline)
                    unread.add(s)
                    link.sendall(frame)
                except (_Down, OSError) as e:
                    missing[s] = str(e) if isinstance(e, _Down) else f"connection lost ({e})"
            answers, failed = {}, []
            for s in sorted(unread - set(missing)):
                try:
                    links[s].settimeout(max(deadline - time.monotonic(), 1e-3))
                    kind, reply = wire.recv_frame(links[s])
                except TimeoutError:
                    missing[s] = f"no answer in {self.timeout_s:g} s"
                    continue
                except (OSError, EOFError) as e:
                    missing[s] = f"connection lost ({str(e) or type(e).__name__})"
                    continue
                except wire.WireError as e:
                    raise wire.WireError(f"{names[s]}: {e}") from None
                if kind == wire.REFUSED:
                    raise wire.WireError(f"{names[s]} refused the request: {reply}")
                in_step = reply.seq == seq if kind == wire.HITS else isinstance(reply, list) and reply[:1] == [seq]
                if kind not in (expect, wire.FAILED) or not in_step:
                    raise wire.WireError(f"{names[s]} answered out of step (request {seq}): {str(reply)[:200]}")
                unread.discard(s)
                if kind == wire.HITS:
                    answers[s] = [_hits_of(reply.arrays)]
                elif kind == wire.REPLY:
                    answers[s] = [[ShardHits(**h) for h in hits] for hits in reply[1]]
                else:
                    failed.append(s)
        finally:
            for s in unread:
                self._drop(links, s)
        if failed:
            again, down = self._gather([self.actors[s].search.remote(requests) for s in failed], True, shards=failed)
            answers.update(zip([s for s in failed if names[s] not in down], again))
            missing.update({names.index(n): why for n, why in down.items()})
        if missing and not allow_partial:
            raise ShardsUnavailable({names[s]: missing[s] for s in sorted(missing)})
        return [answers[s] for s in sorted(answers)], [names[s] for s in sorted(missing)]

    def _links(self) -> list[socket.socket | None]:
        """This thread's connection to each shard (None: not connected), registered for close()."""
        links = getattr(self._call, "links", None)
        if links is None:
            links = self._call.links = [None] * self.layout.num_shards
            with self._links_lock:
                self._all_links.append(links)
        return links

    @staticmethod
    def _drop(links: list[socket.socket | None], s: int) -> None:
        if links[s] is not None:
            links[s].close()
            links[s] = None

    def _connect(self, s: int, deadline: float) -> socket.socket:
        """A connection to shard ``s``, at the address its actor gives now (_Down if it cannot)."""
        address, down = self._gather([self.actors[s].address.remote()], True, shards=[s],
                                     timeout_s=max(deadline - time.monotonic(), 1e-3))
        if down:
            raise _Down(down[self.shard_names[s]])
        return wire.connect(tuple(address[0]), max(deadline - time.monotonic(), 1e-3))

    def _gather(self, refs: list[Any], allow_partial: bool = False, shards: Sequence[int] | None = None,
                timeout_s: float | None = None) -> tuple[list[Any], dict[str, str]]:
        """The answers of ``shards`` (default: all, in order) to ``refs``; shards that failed are
        missing, with why (an error unless ``allow_partial``). One wait for all in the common
        case, one per shard only after a failure."""
        ray, timeout_s = self._ray, timeout_s or self.timeout_s
        try:
            return ray.get(refs, timeout=timeout_s), {}
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, ray.exceptions.ActorUnavailableError):
            pass
        except ray.exceptions.RayTaskError as e:
            raise e.cause from None  # the shard's own error (bad input...), as a local search raises it
        answers, missing = [], {}
        names = self.shard_names if shards is None else [self.shard_names[i] for i in shards]
        for name, ref in zip(names, refs):
            try:
                answers.append(ray.get(ref, timeout=timeout_s))
            except ray.exceptions.RayTaskError as e:
                raise e.cause from None
            except ray.exceptions.GetTimeoutError:
                missing[name] = f"no answer in {timeout_s:g} s"
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as e:
                missing[name] = f"actor down ({type(e).__name__})"
        if missing and not allow_partial:
            raise ShardsUnavailable(missing)
        return answers, missing

    def explain(self, query: Any, doc_id: str) -> list[dict[str, Any]]:
        """Per-term contributions of ``doc_id``, from the shard that holds it."""
        q = self.encode_queries([query])
        return self._gather([self._owner(doc_id).explain.remote(q.to_dict(0), doc_id)], shards=[self._shard(doc_id)])[0][0]

    def tune(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        raise LsrError("tune one shard's collection (`lsr tune --index DIR/shard-000`); its knobs suit the others")

    # ---- writes -------------------------------------------------------------------------
    def _shard(self, doc_id: str) -> int:
        return shard_of(doc_id, self.layout.num_shards)

    def _owner(self, doc_id: str) -> Any:
        """The actor of the shard holding ``doc_id``."""
        return self.actors[self._shard(doc_id)]

    def _by_shard(self, ids: Iterable[str]) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for i, d in enumerate(ids):
            groups.setdefault(self._shard(d), []).append(i)
        return groups

    def add(self, docs: Iterable[Document | Mapping[str, Any]], *, upsert: bool = False) -> int:
        """Buffer documents on the shards owning their ids; all are checked (parsed, ids unique
        in the batch and, without upsert, not live in their shard) before any shard buffers one."""
        parsed = [d if isinstance(d, Document) else Document.parse(d, f"document {i}") for i, d in enumerate(docs)]
        seen: dict[str, int] = {}
        for i, d in enumerate(parsed):
            if d.id in seen:
                raise DataError(f"document {i}: id {d.id!r} repeats document {seen[d.id]} of this batch")
            seen[d.id] = i
        groups = self._by_shard(d.id for d in parsed)
        if not upsert:
            taken = self._gather([self.actors[s].live.remote([parsed[i].id for i in rows]) for s, rows in groups.items()],
                                 shards=list(groups))[0]
            taken = [t for part in taken for t in part]
            if taken:
                raise DataError(f"document id {taken[0]!r} exists already (use upsert to replace it)")
        counts = self._gather([self.actors[s].add.remote([parsed[i] for i in rows], upsert) for s, rows in groups.items()],
                              shards=list(groups))[0]
        return sum(counts)

    def upsert(self, docs: Iterable[Document | Mapping[str, Any]]) -> int:
        return self.add(docs, upsert=True)

    def delete(self, ids: Iterable[str]) -> dict[str, list[str]]:
        ids = list(dict.fromkeys(str(i) for i in ids))
        groups = self._by_shard(ids)
        parts = self._gather([self.actors[s].delete.remote([ids[i] for i in rows]) for s, rows in groups.items()],
                             shards=list(groups))[0]
        deleted = {d for p in parts for d in p["deleted"]}
        return {"deleted": [d for d in ids if d in deleted], "not_found": [d for d in ids if d not in deleted]}

    def commit(self) -> dict[str, int]:
        """Commit every shard with buffered changes (each atomically, one after the other);
        returns the new generation of each shard that committed."""
        gens = self._gather([a.commit.remote() for a in self.actors])[0]
        return {n: g for n, g in zip(self.shard_names, gens) if g is not None}

    def get(self, doc_id: str) -> Any:
        return self._gather([self._owner(doc_id).get.remote(doc_id)], shards=[self._shard(doc_id)])[0][0]

    def close(self) -> None:
        """Stop the shard actors (buffered, uncommitted writes are dropped)."""
        with self._links_lock:
            for links in self._all_links:
                for s in range(len(links)):
                    self._drop(links, s)
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []
        if self.collection is not None:
            self.collection.close()


def _search_frame(seq: int, requests: Sequence[Mapping[str, Any]]) -> bytes | None:
    """``requests`` as a SEARCH frame when they are one plain sparse top-k (see the module),
    else None (they go as JSON). Its arrays: the query rows' indptr, indices and values, a value
    per knob of the mode (NaN: not given; a choice: its position in the choices), and the ids and
    names (:func:`_text_arrays`) of the terms past the build vocabulary."""
    if len(requests) != 1:
        return None
    r = requests[0]
    q, threads = r["queries"], r["threads"] or 0
    if (r["mode"] not in SPARSE_MODES or q.get("indptr") is None or q["dense"] is not None
            or r["filter"] is not None or r["fields"] is not None or r["snippet"] is not None
            or not isinstance(threads, int) or not 0 <= threads < 1 << 16 or r["k"] >= 1 << 32):
        return None
    knobs = np.full(len(SPARSE_MODES[r["mode"]].knobs), np.nan)
    for i, knob in enumerate(SPARSE_MODES[r["mode"]].knobs):
        if knob.name in r["knobs"]:
            value = r["knobs"][knob.name]
            knobs[i] = knob.choices.index(value) if knob.choices else value
    late_ids, late_names = [t for t, _ in q["late"]], [name for _, name in q["late"]]
    arrays = [np.asarray(q["indptr"], np.int64), np.asarray(q["indices"], np.int32), np.asarray(q["values"], np.float32), knobs,
              np.array(late_ids, np.int32), *_text_arrays(late_names)]
    return wire.pack_arrays(wire.SEARCH, seq, arrays, k=r["k"], threads=threads, mode=FAST_MODES.index(r["mode"]))


def _request_of(frame: wire.Arrays) -> dict[str, Any]:
    """The request a SEARCH frame (:func:`_search_frame`) carries, as :meth:`ShardServer._search` takes it."""
    indptr, indices, values, knobs, late, names, ends = frame.arrays
    mode = SPARSE_MODES[FAST_MODES[frame.mode]]
    late = list(zip(late.tolist(), _texts_of(names, ends), strict=True))
    return {"queries": {"indptr": indptr, "indices": indices, "values": values, "late": late}, "k": frame.k, "mode": mode.name,
            "threads": frame.threads or None,
            "knobs": {knob.name: knob.choices[int(v)] if knob.choices else int(v) if knob.integer else v
                      for knob, v in zip(mode.knobs, knobs.tolist(), strict=True) if v == v}}


def _hits_arrays(hits: Sequence[ShardHits]) -> list[np.ndarray]:
    """One shard's hits of each query (sparse: no fields, no dense fraction) as HITS arrays:
    hits per query, tie keys, scores, the ids' text (UTF-8) and where each id ends in it (in
    characters)."""
    return [np.array([len(h.ids) for h in hits], np.int64), np.concatenate([np.zeros(0, np.int64), *(h.keys for h in hits)]),
            np.concatenate([np.zeros(0), *(h.scores for h in hits)]), *_text_arrays([d for h in hits for d in h.ids])]


def _hits_of(arrays: Sequence[np.ndarray]) -> list[ShardHits]:
    """The per-query hits of HITS arrays (:func:`_hits_arrays`)."""
    try:
        counts, keys, scores, text, ends = arrays
        ids, counts = _texts_of(text, ends), counts.tolist()
        if not sum(counts) == len(keys) == len(scores) == len(ids):
            raise ValueError(f"{sum(counts)} hits, {len(keys)} keys, {len(scores)} scores, {len(ids)} ids")
    except ValueError as e:
        raise wire.WireError(f"malformed HITS frame: {e}") from None
    out, at = [], 0
    for n in counts:
        out.append(ShardHits(keys[at:at + n], scores[at:at + n], ids[at:at + n], None, None))
        at += n
    return out


def _text_arrays(texts: Sequence[str]) -> list[np.ndarray]:
    """Strings as two arrays: their text (UTF-8, lone surrogates kept) and where each ends in it, in characters."""
    return [np.frombuffer("".join(texts).encode("utf-8", "surrogatepass"), np.uint8), np.cumsum([len(t) for t in texts], dtype=np.int64)]


def _texts_of(text: np.ndarray, ends: np.ndarray) -> list[str]:
    """The strings of :func:`_text_arrays` (ValueError if they do not fit each other)."""
    whole, ends = text.tobytes().decode("utf-8", "surrogatepass"), ends.tolist()  # UnicodeDecodeError is a ValueError
    if (ends[-1] if ends else 0) != len(whole):
        raise ValueError(f"{len(ends)} strings ending at {ends[-1:]} in {len(whole)} characters")
    return [whole[a:b] for a, b in zip([0, *ends], ends)]


def _merge(parts: Sequence[ShardHits], k: int) -> ShardHits:
    """The best k of the shards' hits: score descending, then the lower tie key."""
    keys = np.concatenate([p.keys for p in parts]) if parts else np.zeros(0, np.int64)
    scores = np.concatenate([p.scores for p in parts]) if parts else np.zeros(0)
    order = np.lexsort((keys, -scores))[:k]
    ids = [d for p in parts for d in p.ids]
    fields = [f for p in parts for f in p.fields] if parts and parts[0].fields is not None else None
    fractions = [p.dense_fraction for p in parts]
    return ShardHits(keys[order], scores[order], [ids[j] for j in order.tolist()],
                     [fields[j] for j in order.tolist()] if fields is not None else None,
                     1.0 if fractions and all(f == 1.0 for f in fractions) else None)


def _result(hits: ShardHits, **flags: Any) -> ShardedResult:
    return ShardedResult(hits.ids, hits.scores.tolist(), hits.dense_fraction, hits.fields, **flags)
