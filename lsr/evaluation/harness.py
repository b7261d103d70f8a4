"""Run a system on a collection, save the run, score it, and measure its efficiency.

A *system* is what produces a ranking: our index with a model (``bm25`` or a SPLADE model),
a prebuilt index directory, or pyserini's Lucene BM25 (the reference). :func:`evaluate_system`
builds (or reuses) its index, searches the collection's queries, writes a TREC run with a JSON
description next to it, scores the run *as written* with :func:`lsr.evaluation.metrics.evaluate`,
and returns one report: dataset, system description, metrics, efficiency, run file and hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsr.data import Collection, Run, read_run, write_run
from lsr.errors import DataError, LsrError
from lsr.evaluation import pyserini_ref
from lsr.evaluation.common import build_key, git_commit, latency_ms, need_corpus, relative, safe_name, sample_indices
from lsr.evaluation.metrics import DEFAULT_METRICS, evaluate
from lsr.retrieval import Retriever
from lsr.retrieval.modes import get_mode
from lsr.util import cache_dir as lsr_cache, sha256_file
from lsr.version import __version__

KINDS = ("lsr", "index", "pyserini-bm25", "fusion")
FUSION_OPTIONS = ("fusion", "depth", "rrf_k", "normalization")


# ---- systems ----------------------------------------------------------------------------------
@dataclass
class SystemSpec:
    """What produces a run.

    kind ``lsr``: our engine with ``model`` (``bm25`` or a SPLADE model), index built from the
    collection's corpus and cached; ``index``: a prebuilt index directory (``index``);
    ``pyserini-bm25``: pyserini's Lucene BM25 on the same corpus (the optional reference).
    ``params`` are build settings (``k1``, ``b``, ``norms``, ``quantization``, ``max_length``...);
    ``knobs`` are search-time settings of the mode; ``query`` how query texts are encoded
    (``encoder``: ``model``/``idf``/``idf-json``, ``expansion``, ``weighting``; unset: the index's).
    kind ``fusion``: ``systems`` (configs of other systems, each with a ``weight``) fused by
    :class:`lsr.retrieval.hybrid.Fusion`; its ``knobs`` are the fusion's (``fusion``, ``depth``,
    ``rrf_k``, ``normalization``).
    """

    name: str
    kind: str = "lsr"
    model: str | None = None
    index: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    mode: str = "exact"
    knobs: dict[str, Any] = field(default_factory=dict)
    query_encodings: str | None = None
    query: dict[str, Any] = field(default_factory=dict)
    systems: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from lsr.retrieval.collection import query_defaults

        query_defaults(self.query, self.model)  # unknown settings fail here, naming the system
        if self.kind not in KINDS:
            raise ValueError(f"system {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "lsr" and not self.model:
            raise ValueError(f"system {self.name!r}: kind 'lsr' needs a model")
        if self.kind == "index" and not self.index:
            raise ValueError(f"system {self.name!r}: kind 'index' needs an index directory")
        if self.kind == "fusion":
            if not self.systems:
                raise ValueError(f"system {self.name!r}: kind 'fusion' needs systems to fuse")
            extra = set(self.knobs) - set(FUSION_OPTIONS)
            if extra:
                raise ValueError(f"system {self.name!r}: a fusion's knobs are {', '.join(FUSION_OPTIONS)}, not {sorted(extra)}")
            for cfg in self.systems:
                SystemSpec.from_config({k: v for k, v in cfg.items() if k != "weight"})

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "SystemSpec":
        cfg = dict(cfg)
        known = {"name", "kind", "model", "index", "params", "mode", "knobs", "query_encodings", "query", "systems"}
        extra = set(cfg) - known
        if extra:
            raise ValueError(f"system {cfg.get('name')!r}: unknown keys {sorted(extra)}")
        if "name" not in cfg:
            raise ValueError("every system needs a name")
        return cls(**cfg)


def get_index(spec: SystemSpec, collection: Collection, cache_dir: str | os.PathLike, *, rebuild: bool = False,
              log: Callable[[str], None] = print) -> tuple[Retriever, dict[str, Any]]:
    """Our retriever for ``spec`` on ``collection`` (its index built once, then reused) and its
    build record. The parts the system's mode needs (approx, dense) are built with it."""
    if spec.kind == "index":
        retriever = Retriever.load(spec.index)
        indexes = retriever.segments.indexes  # a collection's build stats are its (one) segment's
        stats = retriever.manifest.get("stats") or (indexes[0].manifest.get("stats", {}) if len(indexes) == 1 else {})
        return retriever, {"reused": True, "build_seconds": stats.get("build_seconds"), "encode_seconds": stats.get("encode_seconds")}
    corpus = need_corpus(spec.name, collection)
    params = dict(spec.params)
    needs = get_mode(spec.mode).needs
    if "dense" in needs and "dense" not in params:
        raise ValueError(f"system {spec.name!r}: mode {spec.mode!r} needs a dense part: give params.dense = {{model: ...}}")
    with_approx = "approx" in needs or bool(params.get("approx"))
    key = build_key(spec.kind, spec.model, {**params, "approx": with_approx}, collection)
    # named by what it was built from, not by the system: systems that differ only in how they
    # search share one index, and different builds never overwrite each other
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]
    out = Path(cache_dir) / safe_name(collection.name) / f"{safe_name(spec.model)}-{digest}"
    record_file = out.with_name(out.name + ".build.json")
    if not rebuild and ((out / "collection.json").is_file() or (out / "manifest.json").is_file()) and record_file.is_file():
        record = json.loads(record_file.read_text())
        if record.get("key") == key:
            try:
                return Retriever.load(out), {**record, "reused": True}
            except LsrError as e:  # written by another lsr version
                log(f"[{collection.name}/{spec.name}] cached index unreadable ({e}); rebuilding")
        else:
            log(f"[{collection.name}/{spec.name}] cached index was built differently; rebuilding")
    log(f"[{collection.name}/{spec.name}] building the index in {out}")
    t0 = time.perf_counter()
    retriever, summary = _build(spec, corpus, out, params, with_approx, collection.name)
    record = {
        "key": key,
        "summary": summary,
        "encode_seconds": summary.get("encode_seconds"),
        "index_seconds": summary.get("index_seconds"),
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    return retriever, {**record, "reused": False}


# Build settings a system's params may hold, beside ``dense`` and ``approx``: those of the
# index, and those of the encoder (the encoder ignores what it does not take).
_INDEX_PARAMS = {"quantization", "block_size", "reorder", "batch_size"}
_ENCODER_PARAMS = {"k1", "b", "norms", "analyzer", "max_length", "query_max_length", "top_k", "document_expansion"}


def _build(spec: SystemSpec, corpus: Path, out: Path, params: dict[str, Any], approx: bool, collection: str):
    """Build through the one pipeline; ``params.dense`` (a model and DenseIndex.build options)
    adds a dense part whose document encodings are cached under ``~/.cache/lsr/vectors``, so
    systems that differ only in how they search share one encoding."""
    from lsr.index.approx import ApproxSettings
    from lsr.pipeline import build_index

    dense = dict(params.pop("dense", {}))
    approx_settings = params.pop("approx", None)
    extra = set(params) - _INDEX_PARAMS - _ENCODER_PARAMS
    if extra:
        raise ValueError(f"system {spec.name!r}: unknown params {sorted(extra)} (allowed: {sorted(_INDEX_PARAMS | _ENCODER_PARAMS | {'dense', 'approx'})})")
    if dense and "model" not in dense:
        raise ValueError(f"system {spec.name!r}: params.dense needs a model")
    dense_model = dense.pop("model", None)
    return build_index(
        out, corpus=corpus, model=spec.model, show_progress_bar=False,
        encoder_options={k: v for k, v in params.items() if k in _ENCODER_PARAMS},
        **{k: v for k, v in params.items() if k in _INDEX_PARAMS},
        approx=ApproxSettings(**approx_settings) if isinstance(approx_settings, dict) else bool(approx or approx_settings),
        dense_model=dense_model, dense_options=dense,
        dense_cache=lsr_cache("vectors") / safe_name(dense_model) / f"{safe_name(collection)}.dense.npz" if dense_model else None,
    )


# ---- queries ----------------------------------------------------------------------------------
def encoded_queries(retriever: Retriever, collection: Collection, query_encodings: str | None, mode: str = "exact",
                    query: dict[str, Any] | None = None):
    """Query ids, the queries encoded as ``mode`` searches them (:meth:`Retriever.encode`, with
    the ``query`` settings of a SystemSpec), encode seconds, notes."""
    notes: list[str] = []
    options = {f"query_{k}": v for k, v in (query or {}).items() if v is not None}
    if query_encodings:
        from lsr.encoders.query_encodings import read_query_encodings

        if get_mode(mode).text_only:
            raise DataError(f"mode {mode!r} encodes query texts itself; it takes no query_encodings")
        ids, rows = read_query_encodings(query_encodings)
        by_id = dict(zip(ids, rows))
        wanted = [q.id for q in collection.queries]
        missing = [q for q in wanted if q not in by_id]
        if len(missing) == len(wanted):
            raise DataError(f"{query_encodings}: none of the collection's {len(wanted)} query ids is in the encodings file")
        if missing:
            notes.append(f"{len(missing)} queries have no precomputed encoding and were not searched")
        keep = [q for q in wanted if q in by_id]
        return keep, retriever.encode_queries([by_id[q] for q in keep]), 0.0, notes
    texts = [q.text for q in collection.queries]
    retriever.encode(texts[:2], mode, **options)  # loads the model (not part of the per-query cost)
    t0 = time.perf_counter()
    vectors = retriever.encode(texts, mode, **options)
    return [q.id for q in collection.queries], vectors, time.perf_counter() - t0, notes


# ---- one evaluation ---------------------------------------------------------------------------
def evaluate_system(
    spec: SystemSpec,
    collection: Collection,
    *,
    k: int = 1000,
    metrics: Sequence[str] = DEFAULT_METRICS,
    cache_dir: str | os.PathLike = "indexes",
    runs_dir: str | os.PathLike = "runs",
    threads: int | None = None,
    efficiency: bool = True,
    rebuild: bool = False,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Search ``collection`` with ``spec``, write and score the run; returns the report."""
    get_mode(spec.mode)
    if not collection.queries:
        raise DataError(f"collection {collection.name!r} has no queries")
    if not collection.judged_queries:
        raise DataError(f"collection {collection.name!r}: none of its {len(collection.queries)} queries has judgments in {collection.qrels.source}")
    runner = {"pyserini-bm25": pyserini_ref.run_system, "fusion": _run_fusion}.get(spec.kind, _run_ours)
    run, system, eff, notes = runner(spec, collection, k=k, cache_dir=cache_dir, threads=threads, efficiency=efficiency, rebuild=rebuild, log=log)

    run_path = Path(runs_dir) / safe_name(collection.name) / f"{safe_name(spec.name)}.trec"
    dataset = dataset_description(collection)
    description = {
        "system": system,
        "dataset": dataset,
        "k": k,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "lsr_version": __version__,
        "git_commit": git_commit(),
        "command": command,
    }
    if collection.ignore_identical_ids:  # the saved run is what other tools score: no self-hits in it
        run = {q: {d: s for d, s in hits.items() if d != q} for q, hits in run.items()}
    write_run(run_path, run, tag=safe_name(spec.name), description=description)
    written = read_run(run_path)  # score exactly what was saved (6-decimal scores)
    result = evaluate(
        written,
        collection.qrels,
        metrics,
        query_ids=[q.id for q in collection.queries],
        relevance_level=collection.relevance_level,
        ignore_identical_ids=collection.ignore_identical_ids,
    )
    log(f"[{collection.name}/{spec.name}] " + "  ".join(f"{m} {v:.4f}" for m, v in result.scores.items()))
    return {
        "dataset": dataset,
        "system": system,
        "metrics": result.scores,
        "evaluation": {k_: v for k_, v in result.to_dict().items() if k_ != "scores"},
        "efficiency": eff,
        "notes": notes + collection.notes + result.notes,
        "run": {"path": relative(run_path), "sha256": sha256_file(run_path), "queries": len(written), "lines": sum(len(d) for d in written.values())},
        "description": description,
    }


def _run_ours(spec: SystemSpec, collection: Collection, *, k: int, cache_dir: str | os.PathLike, threads: int | None,
              efficiency: bool, rebuild: bool, log: Callable[[str], None]) -> tuple[Run, dict[str, Any], dict[str, Any], list[str]]:
    """Our system: build or reuse the index, search, describe; the interface pyserini_ref.run_system shares."""
    retriever, build = get_index(spec, collection, cache_dir, rebuild=rebuild, log=log)
    query_ids, queries, encode_seconds, notes = encoded_queries(retriever, collection, spec.query_encodings, spec.mode, spec.query)

    def search(encoded, n_threads=threads):
        return retriever.search_encoded(encoded, k, mode=spec.mode, threads=n_threads, **spec.knobs)

    search(queries.take(list(range(min(len(queries), 4)))))  # warm up the batch kernel
    t0 = time.perf_counter()
    results = search(queries)
    search_seconds = time.perf_counter() - t0
    run: Run = {q: dict(zip(r.ids, r.scores)) for q, r in zip(query_ids, results)}
    info = retriever.info()
    system = {
        "name": spec.name,
        "kind": spec.kind,
        "engine": "lsr",
        "model": info.get("model"),
        "mode": spec.mode,
        "knobs": spec.knobs,
        "search": f"Retriever.search_encoded, mode {spec.mode}: {get_mode(spec.mode).help}",
        "params": spec.params,
        "query_encodings": spec.query_encodings,
        "query": {**retriever.query_defaults, **{k: v for k, v in spec.query.items() if v is not None}},
        "index": {
            "path": relative(Path(info["path"])) if info.get("path") else None,
            "encoder": info.get("encoder"),
            "settings": info.get("settings"),
            "num_docs": info.get("num_docs"),
            "vocab_size": info.get("vocab_size"),
            "num_postings": info.get("num_postings"),
            "max_quantization_error": info.get("max_quantization_error"),
            "dense": info.get("dense"),
        },
    }
    eff: dict[str, Any] = {
        "queries": len(queries),
        "threads": threads or _numba_threads(),
        "encode_ms_per_query": 1000 * encode_seconds / len(queries) if len(queries) and not spec.query_encodings else None,
        "batch_search_seconds": search_seconds,
        "qps": len(queries) / search_seconds if search_seconds > 0 else None,
        "index_bytes": info.get("bytes"),
        "build_seconds": build.get("build_seconds"),
        "encode_corpus_seconds": build.get("encode_seconds"),
        "recall_vs_exact": 1.0 if spec.mode == "exact" else None,
    }
    fractions = [r.dense_fraction for r in results if r.dense_fraction is not None]
    if fractions:
        eff["dense_fraction"] = float(np.mean(fractions))
    if efficiency:
        eff.update(latency_ms(lambda q: search(q, 1), [queries.take([i]) for i in sample_indices(len(queries))]))
    if spec.mode != "exact" and not get_mode(spec.mode).text_only:  # dense modes rank differently by design
        exact = retriever.search_encoded(queries, k, mode="exact", threads=threads)
        reference = {q: dict(zip(r.ids, r.scores)) for q, r in zip(query_ids, exact)}
        from lsr.evaluation.metrics import recall_against

        eff["recall_vs_exact_k"] = min(k, 10)
        eff["recall_vs_exact"] = recall_against(run, reference, eff["recall_vs_exact_k"])
    return run, system, eff, notes


def _run_fusion(spec: SystemSpec, collection: Collection, *, k: int, cache_dir: str | os.PathLike, threads: int | None,
                efficiency: bool, rebuild: bool, log: Callable[[str], None]) -> tuple[Run, dict[str, Any], dict[str, Any], list[str]]:
    """Several of our systems (each built or reused as on its own) fused by document id."""
    from lsr.retrieval.hybrid import FusedSystem, Fusion

    members = []
    for cfg in spec.systems:
        sub = SystemSpec.from_config({key: v for key, v in cfg.items() if key != "weight"})
        if sub.kind not in ("lsr", "index"):
            raise ValueError(f"system {spec.name!r}: only lsr and index systems can be fused, not {sub.kind!r}")
        retriever, _ = get_index(sub, collection, cache_dir, rebuild=rebuild, log=log)
        members.append(FusedSystem(retriever, cfg.get("weight", 1.0), sub.mode, sub.knobs,
                                   {f"query_{key}": v for key, v in sub.query.items() if v is not None}, sub.name))
    fusion = Fusion(members, **spec.knobs)
    query_ids, texts = [q.id for q in collection.queries], [q.text for q in collection.queries]
    fusion.encode(texts[:2])  # loads the models
    t0 = time.perf_counter()
    encoded = fusion.encode(texts)
    encode_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = fusion.search_encoded(encoded, k, threads=threads)
    search_seconds = time.perf_counter() - t0
    run: Run = {q: dict(zip(r.ids, r.scores)) for q, r in zip(query_ids, results)}
    system = {"name": spec.name, "kind": "fusion", "engine": "lsr", "fusion": fusion.describe(), "systems": spec.systems}
    eff: dict[str, Any] = {"queries": len(texts), "threads": threads or _numba_threads(),
                           "encode_ms_per_query": 1000 * encode_seconds / len(texts), "batch_search_seconds": search_seconds,
                           "qps": len(texts) / search_seconds if search_seconds > 0 else None}
    if efficiency:
        singles = [[e.take([i]) for e in encoded] for i in sample_indices(len(texts))]
        eff.update(latency_ms(lambda q: fusion.search_encoded(q, k, threads=1), singles))
    return run, system, eff, []


def dataset_description(collection: Collection) -> dict[str, Any]:
    return {
        "name": collection.name,
        "split": collection.split,
        "root": relative(collection.root) if collection.root else None,
        "qrels": relative(Path(collection.qrels.source)),
        "queries": len(collection.queries),
        "judged_queries": len(collection.judged_queries),
        "qrels_lines": len(collection.qrels),
        "relevance_level": collection.relevance_level,
        "ignore_identical_ids": collection.ignore_identical_ids,
    }


# ---- helpers ----------------------------------------------------------------------------------
def _numba_threads() -> int:
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)
