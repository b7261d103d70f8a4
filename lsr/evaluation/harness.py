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
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsr.data.qrels import Collection, Run, read_run, write_run
from lsr.errors import DataError, LsrError
from lsr.evaluation.metrics import DEFAULT_METRICS, evaluate

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KINDS = ("lsr", "index", "pyserini-bm25")
LATENCY_SAMPLE = 2000  # queries timed one by one for the latency percentiles


# ---- search modes -----------------------------------------------------------------------------
def _search_exact(index, queries, k: int, threads: int | None = None, **knobs: Any):
    """Exact top-k of encoded queries (a SparseVectors over the index vocabulary)."""
    if knobs:
        raise ValueError(f"mode 'exact' takes no knobs, got {sorted(knobs)}")
    return index.search_encoded(queries, k, threads=threads)


def _search_exact_one(index, query, k: int, **_knobs: Any):
    return index.search_encoded(query, k)[0]


# name -> (batch search, single-query search). Approximate modes register here.
SEARCH_MODES: dict[str, tuple[Callable, Callable]] = {"exact": (_search_exact, _search_exact_one)}
PLANNED_MODES = {"approx": "approximate search is not available yet (a later issue adds it); use --mode exact"}


def _search_dense(mode: str) -> tuple[Callable, Callable]:
    """Batch and single-query search of a dense mode (lsr.fusion) over HybridQueries."""

    def batch(index, queries, k: int, threads: int | None = None, **knobs: Any):
        from lsr.fusion import search_hybrid_encoded

        return search_hybrid_encoded(index, queries, k, mode=mode, threads=threads, **knobs)

    return batch, lambda index, query, k, **knobs: batch(index, query, k, **knobs)[0]


def _encode_dense(mode: str) -> Callable:
    def encode(index, texts):
        from lsr.fusion import encode_hybrid

        return encode_hybrid(index, texts, mode)

    return encode


SEARCH_MODES.update({mode: _search_dense(mode) for mode in ("dense", "hybrid", "selective")})
# How a mode's queries are encoded, when not as sparse rows (index.encode_queries).
QUERY_ENCODERS: dict[str, Callable] = {mode: _encode_dense(mode) for mode in ("dense", "hybrid", "selective")}


def register_mode(name: str, batch: Callable, single: Callable) -> None:
    """Make ``--mode name`` available: ``batch(index, queries, k, threads=, **knobs)`` and ``single(index, query, k, **knobs)``."""
    SEARCH_MODES[name] = (batch, single)
    PLANNED_MODES.pop(name, None)


def check_mode(mode: str) -> None:
    if mode in SEARCH_MODES:
        return
    if mode in PLANNED_MODES:
        raise LsrError(f"mode {mode!r}: {PLANNED_MODES[mode]}")
    raise LsrError(f"unknown mode {mode!r}; available: {', '.join(SEARCH_MODES)}")


# ---- systems ----------------------------------------------------------------------------------
@dataclass
class SystemSpec:
    """What produces a run.

    kind ``lsr``: our engine with ``model`` (``bm25`` or a SPLADE model), index built from the
    collection's corpus and cached; ``index``: a prebuilt index directory (``index``);
    ``pyserini-bm25``: pyserini's Lucene BM25 on the same corpus (the optional reference).
    ``params`` are build settings (``k1``, ``b``, ``norms``, ``quantization``, ``max_length``...);
    ``knobs`` are search-time settings of the mode.
    """

    name: str
    kind: str = "lsr"
    model: str | None = None
    index: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    mode: str = "exact"
    knobs: dict[str, Any] = field(default_factory=dict)
    query_encodings: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"system {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "lsr" and not self.model:
            raise ValueError(f"system {self.name!r}: kind 'lsr' needs a model")
        if self.kind == "index" and not self.index:
            raise ValueError(f"system {self.name!r}: kind 'index' needs an index directory")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "SystemSpec":
        cfg = dict(cfg)
        known = {"name", "kind", "model", "index", "params", "mode", "knobs", "query_encodings"}
        extra = set(cfg) - known
        if extra:
            raise ValueError(f"system {cfg.get('name')!r}: unknown keys {sorted(extra)}")
        if "name" not in cfg:
            raise ValueError("every system needs a name")
        return cls(**cfg)


def _safe(name: str) -> str:
    return str(name).replace("/", "__").replace(os.sep, "__")


def _corpus_fingerprint(corpus: Path) -> dict[str, Any]:
    st = corpus.stat()
    return {"corpus": str(corpus), "bytes": st.st_size}


def _build_key(spec: SystemSpec, collection: Collection) -> dict[str, Any]:
    return {"kind": spec.kind, "model": spec.model, "params": spec.params, **_corpus_fingerprint(collection.corpus)}


def _need_corpus(spec: SystemSpec, collection: Collection) -> Path:
    if collection.corpus is None:
        raise DataError(
            f"collection {collection.name!r} has no corpus.jsonl (in {collection.root}); system {spec.name!r} "
            "must build an index from it: give a prebuilt index instead (--index)"
        )
    return collection.corpus


def get_index(spec: SystemSpec, collection: Collection, cache_dir: str | os.PathLike, *, rebuild: bool = False, log: Callable[[str], None] = print):
    """Our index for ``spec`` on ``collection`` (built once, then reused) and its build record."""
    from lsr.index import Index

    if spec.kind == "index":
        index = Index.load(spec.index)
        stats = index.manifest.get("stats", {})
        return index, {"reused": True, "build_seconds": stats.get("build_seconds"), "encode_seconds": stats.get("encode_seconds")}
    corpus = _need_corpus(spec, collection)
    out = Path(cache_dir) / _safe(collection.name) / _safe(spec.name)
    record_file = out.with_name(out.name + ".build.json")
    key = _build_key(spec, collection)
    if not rebuild and (out / "manifest.json").is_file() and record_file.is_file():
        record = json.loads(record_file.read_text())
        if record.get("key") == key:
            try:
                return Index.load(out), {**record, "reused": True}
            except LsrError as e:  # written by another lsr version
                log(f"[{collection.name}/{spec.name}] cached index unreadable ({e}); rebuilding")
        else:
            log(f"[{collection.name}/{spec.name}] cached index was built differently; rebuilding")
    log(f"[{collection.name}/{spec.name}] building the index in {out}")
    params = dict(spec.params)
    t0 = time.perf_counter()
    from lsr.encoders.bm25 import build_bm25_index, is_bm25

    if is_bm25(spec.model):
        allowed = {"k1", "b", "norms", "analyzer", "quantization", "block_size", "reorder"}
        _check_params(spec, params, allowed)
        index, summary = build_bm25_index(out, corpus, **params)
    elif "dense" in params:
        index, summary = _build_with_dense(spec, collection, out, cache_dir, params, log)
    else:
        from lsr.pipeline import build_index

        allowed = {"quantization", "batch_size", "max_length", "block_size", "reorder"}
        _check_params(spec, params, allowed)
        index, summary = build_index(out, corpus=corpus, model=spec.model, show_progress_bar=False, **params)
    record = {
        "key": key,
        "summary": summary,
        "encode_seconds": summary.get("encode_seconds"),
        "index_seconds": summary.get("index_seconds"),
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    return index, {**record, "reused": False}


def _build_with_dense(spec: SystemSpec, collection: Collection, out: Path, cache_dir: str | os.PathLike, params: dict[str, Any], log: Callable[[str], None]):
    """The sparse index of the system named like the model (built or reused as any other), plus a
    dense part from ``params["dense"]`` (``model``, and DenseIndex.build options) saved at ``out``.

    Dense document encodings are cached under ~/.cache/lsr/vectors/<dense model>/, so systems
    that differ only in how they search share one encoding.
    """
    from lsr.bench.data import cache_dir as vectors_cache
    from lsr.pipeline import add_dense_from_corpus

    dense = dict(params.pop("dense"))
    if "model" not in dense:
        raise ValueError(f"system {spec.name!r}: params.dense needs a model")
    model = dense.pop("model")
    sparse_spec = SystemSpec(name=spec.model, kind=spec.kind, model=spec.model, params=params)
    index, _ = get_index(sparse_spec, collection, cache_dir, log=log)
    cache = vectors_cache() / _safe(model) / f"{_safe(collection.name)}.dense.npz"
    seconds = add_dense_from_corpus(index, collection.corpus, model, options=dense, cache=cache, show_progress_bar=False)
    index.save(out)
    return index, {"path": str(out), "num_docs": index.num_docs, "dense_seconds": seconds, "bytes": index.info()["bytes"]}


def _check_params(spec: SystemSpec, params: Mapping[str, Any], allowed: set[str]) -> None:
    extra = set(params) - allowed
    if extra:
        raise ValueError(f"system {spec.name!r}: unknown params {sorted(extra)} (allowed: {sorted(allowed)})")


# ---- queries ----------------------------------------------------------------------------------
def encoded_queries(index, collection: Collection, query_encodings: str | None, mode: str = "exact"):
    """Query ids, the queries encoded as ``mode`` searches them (SparseVectors over the index
    vocabulary, or HybridQueries for the dense modes), encode seconds, notes."""
    notes: list[str] = []
    if query_encodings:
        from lsr.encoders.query_encodings import read_query_encodings

        ids, rows = read_query_encodings(query_encodings)
        by_id = dict(zip(ids, rows))
        wanted = [q.id for q in collection.queries]
        missing = [q for q in wanted if q not in by_id]
        if len(missing) == len(wanted):
            raise DataError(f"{query_encodings}: none of the collection's {len(wanted)} query ids is in the encodings file")
        if missing:
            notes.append(f"{len(missing)} queries have no precomputed encoding and were not searched")
        keep = [q for q in wanted if q in by_id]
        if mode in QUERY_ENCODERS:
            raise DataError(f"mode {mode!r} encodes query texts itself; it takes no query_encodings")
        return keep, index.encode_queries([by_id[q] for q in keep]), 0.0, notes
    texts = [q.text for q in collection.queries]
    encode = QUERY_ENCODERS.get(mode, lambda index, texts: index.encode_queries(texts))
    encode(index, texts[:2])  # loads the model (not part of the per-query cost)
    t0 = time.perf_counter()
    vectors = encode(index, texts)
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
    check_mode(spec.mode)
    if not collection.queries:
        raise DataError(f"collection {collection.name!r} has no queries")
    if not collection.judged_queries:
        raise DataError(f"collection {collection.name!r}: none of its {len(collection.queries)} queries has judgments in {collection.qrels.source}")
    if spec.kind == "pyserini-bm25":
        from lsr.evaluation import pyserini_ref

        run, system, eff = pyserini_ref.run_system(spec, collection, k=k, cache_dir=cache_dir, threads=threads, efficiency=efficiency, log=log)
        notes: list[str] = []
    else:
        run, system, eff, notes = _run_ours(spec, collection, k=k, cache_dir=cache_dir, threads=threads, efficiency=efficiency, rebuild=rebuild, log=log)

    run_path = Path(runs_dir) / _safe(collection.name) / f"{_safe(spec.name)}.trec"
    dataset = dataset_description(collection)
    description = {
        "system": system,
        "dataset": dataset,
        "k": k,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "lsr_version": _lsr_version(),
        "git_commit": git_commit(),
        "command": command,
    }
    write_run(run_path, run, tag=_safe(spec.name), description=description)
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
        "run": {"path": _relative(run_path), "sha256": _sha256(run_path), "queries": len(written), "lines": sum(len(d) for d in written.values())},
        "description": description,
    }


def _run_ours(spec, collection, *, k, cache_dir, threads, efficiency, rebuild, log):
    index, build = get_index(spec, collection, cache_dir, rebuild=rebuild, log=log)
    query_ids, queries, encode_seconds, notes = encoded_queries(index, collection, spec.query_encodings, spec.mode)
    batch, single = SEARCH_MODES[spec.mode]
    batch(index, queries.take(list(range(min(len(queries), 4)))), k, threads=threads, **spec.knobs)  # warm up the batch kernel
    t0 = time.perf_counter()
    results = batch(index, queries, k, threads=threads, **spec.knobs)
    search_seconds = time.perf_counter() - t0
    run: Run = {q: dict(zip(r.ids, r.scores)) for q, r in zip(query_ids, results)}
    info = index.info()
    system = {
        "name": spec.name,
        "kind": spec.kind,
        "engine": "lsr",
        "model": info.get("model"),
        "mode": spec.mode,
        "knobs": spec.knobs,
        "search": "Index.search_encoded (block-max, exact: alpha=1, beta=1)" if spec.mode == "exact" else spec.mode,
        "params": spec.params,
        "query_encodings": spec.query_encodings,
        "index": {
            "path": _relative(Path(info["path"])) if info.get("path") else None,
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
    fractions = [r.dense_fraction for r in results if getattr(r, "dense_fraction", None) is not None]
    if fractions:
        eff["dense_fraction"] = float(np.mean(fractions))
    if efficiency:
        eff.update(latency_ms(lambda q: single(index, q, k, **spec.knobs), [queries.take([i]) for i in sample_indices(len(queries))]))
    if spec.mode != "exact" and spec.mode not in QUERY_ENCODERS:  # dense modes rank differently by design
        exact = _search_exact(index, queries, k, threads=threads)
        reference = {q: dict(zip(r.ids, r.scores)) for q, r in zip(query_ids, exact)}
        from lsr.evaluation.metrics import recall_against

        eff["recall_vs_exact_k"] = min(k, 10)
        eff["recall_vs_exact"] = recall_against(run, reference, eff["recall_vs_exact_k"])
    return run, system, eff, notes


def sample_indices(n: int, sample: int = LATENCY_SAMPLE) -> list[int]:
    """At most ``sample`` evenly spaced positions out of ``n``."""
    return list(range(0, n, max(1, n // sample)))[:sample]


def latency_ms(search_one: Callable[[Any], Any], queries: Sequence[Any], sample: int = LATENCY_SAMPLE) -> dict[str, float]:
    """p50/p99/mean latency (ms) of single-query searches, one after another on one thread."""
    if not queries:
        return {}
    chosen = [queries[i] for i in sample_indices(len(queries), sample)]
    search_one(chosen[0])
    times = []
    for q in chosen:
        t0 = time.perf_counter()
        search_one(q)
        times.append(time.perf_counter() - t0)
    arr = np.asarray(times) * 1000
    return {
        "latency_ms_p50": float(np.percentile(arr, 50)),
        "latency_ms_p99": float(np.percentile(arr, 99)),
        "latency_ms_mean": float(arr.mean()),
        "latency_queries": len(chosen),
        "qps_single_thread": float(len(arr) / (arr.sum() / 1000)) if arr.sum() > 0 else None,
    }


def dataset_description(collection: Collection) -> dict[str, Any]:
    return {
        "name": collection.name,
        "split": collection.split,
        "root": _relative(collection.root) if collection.root else None,
        "qrels": _relative(Path(collection.qrels.source)),
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


def _lsr_version() -> str:
    from lsr import __version__

    return __version__


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _relative(path: Path | str) -> str:
    """A path relative to the project (or to ../shared/data) when it is under one, else as is."""
    p = Path(path).resolve()
    for base, prefix in ((PROJECT_ROOT, ""), (PROJECT_ROOT.parent / "shared", "../shared/")):
        try:
            return prefix + str(p.relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
