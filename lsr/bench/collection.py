"""`lsr bench collection`: a living collection's write path and search costs.

Measured on one dataset in one process: insert throughput (documents with precomputed vectors,
and documents encoded by the collection's model), commit latency, search latency over many
segments and after merging them into one, and filtered search latency at 50%, 5% and 0.1%
selectivity against unfiltered search, in exact and approx modes. Searches are one query at a
time on one thread; the systems of a comparison are interleaved query by query, and each
figure is the per-query median over ``repeats`` passes, then the mean and p99 over queries.

The collections' documents carry a synthetic metadata field (``bucket``, uniform in 0..999),
since neither SciFact nor gcide has metadata to filter on; a filter ``bucket < b`` keeps b/1000
of the documents.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lsr.bench import scratch_work_dir
from lsr.data import SparseVectors, iter_corpus, load_queries, resolve_dataset
from lsr.index.approx import ApproxSettings
from lsr.retrieval import Retriever
from lsr.retrieval.collection import Collection

SELECTIVITIES = (0.5, 0.05, 0.001)
DATASETS = ("scifact", "gcide")


def _docs_and_queries(dataset: str, n_queries: int) -> tuple[str | None, list[dict], list[Any]]:
    """(model, documents as dicts, queries): SciFact as splade-tiny vectors (the benchmark
    cache), gcide as text for BM25 queried with MS MARCO dev-small questions."""
    rng = np.random.default_rng(0)
    if dataset == "scifact":
        from lsr.bench.data import encoded_collection
        from lsr.encoders import load_encoder

        data = encoded_collection("scifact", load_encoder("splade-tiny"))
        docs = [{"id": d, "vector": data.docs.to_dict(i), "metadata": {"bucket": int(b)}}
                for i, (d, b) in enumerate(zip(data.doc_ids, rng.integers(0, 1000, len(data.doc_ids))))]
        queries = [data.queries.to_dict(i) for i in range(min(n_queries, len(data.queries)))]
        return None, docs, queries
    if dataset == "gcide":
        corpus = list(iter_corpus(resolve_dataset("gcide")))
        docs = [{"id": d.id, "title": d.title, "text": d.text, "metadata": {"bucket": int(b)}}
                for d, b in zip(corpus, rng.integers(0, 1000, len(corpus)))]
        queries = [q.text for q in load_queries(resolve_dataset("msmarco-passage") / "queries.dev-small.jsonl")[:n_queries]]
        return "bm25", docs, queries
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def _latency(systems: dict[str, Callable[[int], Any]], n: int, repeats: int) -> dict[str, dict[str, float]]:
    """Per-query median over interleaved passes, then mean/p50/p99 over queries (ms)."""
    times = {name: np.zeros((repeats, n)) for name in systems}
    for name, run in systems.items():
        run(0)  # warm up (compilation, first loads)
    for r in range(repeats):
        for i in range(n):
            for name, run in systems.items():
                t0 = time.perf_counter()
                run(i)
                times[name][r, i] = time.perf_counter() - t0
    out = {}
    for name, t in times.items():
        per_query = np.median(t, axis=0) * 1e3
        out[name] = {"mean_ms": float(per_query.mean()), "p50_ms": float(np.median(per_query)),
                     "p99_ms": float(np.percentile(per_query, 99))}
    return out


@scratch_work_dir("lsr-bench-collection-")
def run_collection_benchmark(dataset: str = "scifact", *, segments: int = 16, n_queries: int = 300, repeats: int = 3,
                             model_docs: int = 500, k: int = 10, out_dir: str | os.PathLike = "evaluation/results/collection",
                             work_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    import numba

    numba.set_num_threads(1)
    model, docs, queries = _docs_and_queries(dataset, n_queries)
    work = Path(work_dir)
    out: dict[str, Any] = {"dataset": dataset, "docs": len(docs), "queries": len(queries), "k": k, "segments": segments,
                           "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "threads": 1},
                           "approx": {"n_postings": None, "note": "approx structure per segment, default knobs"}}

    # -- the write path: batches committed one by one, no merges, so `segments` segments remain;
    # once without and once with the approx structure (whose build is most of a commit's cost)
    batch = -(-len(docs) // segments)
    kind = "precomputed vectors" if model is None else f"{model} (encoded at commit)"
    for key, approx in (("insert", False), ("insert_with_approx", ApproxSettings())):
        collection = Collection.create(work / key, model=model, approx=approx)
        commit_s, t_all = [], time.perf_counter()
        for lo in range(0, len(docs), batch):
            collection.add(docs[lo : lo + batch])
            t0 = time.perf_counter()
            collection.commit(merge=False)
            commit_s.append(time.perf_counter() - t0)
        total = time.perf_counter() - t_all
        out[key] = {"kind": kind + (", with approx structure" if approx else ""), "docs_per_s": len(docs) / total, "batch": batch,
                    "commits": len(commit_s), "commit_ms_median": float(np.median(commit_s) * 1e3),
                    "commit_ms_p95": float(np.percentile(commit_s, 95) * 1e3)}
        if not approx:
            collection.close()
    if dataset == "scifact" and model_docs:
        out["insert_model"] = _insert_with_model(work / "splade", model_docs)

    retriever = Retriever(collection)
    encoded = [retriever.encode_queries([q]) for q in queries]
    n = len(encoded)

    def search(mode: str, flt: dict | None = None) -> Callable[[int], Any]:
        return lambda i: retriever.search_encoded(encoded[i], k, mode=mode, filter=flt)

    before = _latency({f"{m} {len(collection.snapshot().indexes)} segments": search(m) for m in ("exact", "approx")}, n, repeats)
    t0 = time.perf_counter()
    collection.optimize()
    out["optimize_s"] = time.perf_counter() - t0
    after = _latency({f"{m} 1 segment": search(m) for m in ("exact", "approx")}, n, repeats)
    out["segments_latency"] = {**before, **after}

    filters = {f"{s:g}": {"bucket": {"lt": int(round(s * 1000))}} for s in SELECTIVITIES}
    systems = {f"{m} unfiltered": search(m) for m in ("exact", "approx")}
    for label, flt in filters.items():
        for m in ("exact", "approx"):
            systems[f"{m} filter {label}"] = search(m, flt)
    out["filtered_latency"] = _latency(systems, n, repeats)
    out["filtered_recall"] = {label: _recall(retriever, encoded, k, flt) for label, flt in filters.items()}
    out["crossover"] = _crossover(retriever, encoded, k, repeats)
    collection.close()
    write_results(out, Path(out_dir))
    return out


def _insert_with_model(path: Path, n_docs: int) -> dict[str, Any]:
    """Documents encoded by splade-tiny inside the collection's commits (SciFact texts)."""
    corpus = list(iter_corpus(resolve_dataset("scifact")))[:n_docs]
    collection = Collection.create(path, model="splade-tiny")
    collection.add(corpus[:32])
    collection.commit()  # model loaded, kernels compiled
    t0 = time.perf_counter()
    for lo in range(32, len(corpus), 100):
        collection.add(corpus[lo : lo + 100])
        collection.commit()
    seconds = time.perf_counter() - t0
    collection.close()
    return {"kind": "splade-tiny (encoded at commit)", "docs": len(corpus) - 32, "docs_per_s": (len(corpus) - 32) / seconds}


CROSSOVER_SELECTIVITIES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def _crossover(retriever: Retriever, encoded: list[SparseVectors], k: int, repeats: int) -> dict[str, Any]:
    """Where scoring the filtered documents exactly (forward index) stops beating the approx
    kernel under the same mask: the measurement behind ``lsr.index.sparse.SELECTIVE_FILTER``.
    Both plans are timed directly on the (single) segment, interleaved per query."""
    ix = retriever.index
    knobs = ix.approx_knobs()
    buckets = np.array([m["bucket"] for _, m in sorted(retriever.collection.store.metadata(retriever.collection.snapshot().names[0]))])
    prepared = [ix.prepare(q) for q in encoded]
    rows = []
    for s in CROSSOVER_SELECTIVITIES:
        mask = (buckets < s * 1000).astype(np.uint8)
        allowed = np.flatnonzero(mask).astype(np.int32)
        lat = _latency({"rows": lambda i: ix._search_rows(prepared[i], k, allowed),
                        "approx": lambda i: ix._search_approx(prepared[i], k, knobs, 1, mask)}, len(prepared), repeats)
        rows.append({"selectivity": s, "rows_ms": lat["rows"]["mean_ms"], "approx_ms": lat["approx"]["mean_ms"]})
    faster = [r["selectivity"] for r in rows if r["rows_ms"] <= r["approx_ms"]]
    from lsr.index.sparse import SELECTIVE_FILTER

    return {"points": rows, "rows_plan_faster_up_to": max(faster) if faster else None, "threshold_in_use": SELECTIVE_FILTER}


def _recall(retriever: Retriever, encoded: list[SparseVectors], k: int, flt: dict) -> float:
    """Approx recall@k against exact search under the same filter."""
    hits = []
    for q in encoded:
        exact = set(retriever.search_encoded(q, k, mode="exact", filter=flt)[0].ids)
        if exact:
            hits.append(len(exact & set(retriever.search_encoded(q, k, mode="approx", filter=flt)[0].ids)) / len(exact))
    return float(np.mean(hits)) if hits else 1.0


def write_results(out: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"collection_{out['dataset']}"
    (out_dir / f"{stem}.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"# Collection benchmark: {out['dataset']} ({out['docs']:,} docs, {out['queries']} queries, k={out['k']})", "",
        "One query at a time on one thread; systems interleaved per query; per-query median of the passes, then mean / p50 / p99. "
        "Filters use a synthetic uniform `bucket` metadata field (selectivity = fraction of documents kept).", "",
        "## Writes", "",
        "| what | value |", "|---|---:|",
    ]
    for key in ("insert", "insert_with_approx"):
        ins = out[key]
        lines += [f"| insert throughput, {ins['kind']} (batches of {ins['batch']:,}, one commit each) | {ins['docs_per_s']:,.0f} docs/s |",
                  f"| commit latency, {ins['kind']}, median / p95 | {ins['commit_ms_median']:,.1f} / {ins['commit_ms_p95']:,.1f} ms |"]
    lines.append(f"| optimize ({out['segments']} segments -> 1, with approx) | {out['optimize_s']:,.2f} s |")
    if "insert_model" in out:
        m = out["insert_model"]
        lines.append(f"| insert throughput, {m['kind']}, {m['docs']} docs | {m['docs_per_s']:,.1f} docs/s |")
    for title, key in (("Search latency against segments", "segments_latency"), ("Filtered search latency", "filtered_latency")):
        lines += ["", f"## {title}", "", "| system | mean ms | p50 ms | p99 ms |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {v['mean_ms']:.3f} | {v['p50_ms']:.3f} | {v['p99_ms']:.3f} |" for name, v in out[key].items()]
    lines += ["", "## Approx recall@k against exact under the filter", "", "| selectivity | recall |", "|---:|---:|"]
    lines += [f"| {label} | {r:.4f} |" for label, r in out["filtered_recall"].items()]
    cross = out["crossover"]
    lines += ["", "## Approx under a filter: exact scoring of the filtered documents vs the approx kernel with a mask", "",
              f"Scoring the filtered documents from the forward index is faster up to selectivity {cross['rows_plan_faster_up_to']}; "
              f"the engine switches below {cross['threshold_in_use']}.", "",
              "| selectivity | filtered docs scored exactly, ms | approx kernel with mask, ms |", "|---:|---:|---:|"]
    lines += [f"| {r['selectivity']:g} | {r['rows_ms']:.3f} | {r['approx_ms']:.3f} |" for r in cross["points"]]
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    _plot(out, out_dir / f"{stem}.png")


def _plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = out["filtered_latency"]
    labels = ["unfiltered"] + [f"filter {s:g}" for s in SELECTIVITIES]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(7, 4))
    for j, mode in enumerate(("exact", "approx")):
        ax.bar(x + (j - 0.5) * 0.38, [lat[f"{mode} {lab}"]["mean_ms"] for lab in labels], 0.38, label=mode)
    ax.set_xticks(x, ["none"] + [f"{s:g}" for s in SELECTIVITIES])
    ax.set_xlabel("filter selectivity (fraction of documents kept)")
    ax.set_ylabel("mean latency (ms)")
    ax.set_title(f"{out['dataset']}: filtered search, one segment")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
