"""`lsr bench exact`: exact and BMP-approximate search, side by side with `bmp` (Rust) and Lucene.

Every system searches the same documents (same u8 impacts, same document order) with the same
queries, one query at a time on one thread. Recall is measured against this project's
exhaustive scorer. Results go to JSON, a markdown table and a plot.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lsr.bench.data import FULL_COLLECTIONS, EncodedCollection, real_data, vector_stats
from lsr.bench.synth import synthesize
from lsr.data import SparseVectors
from lsr.util import dir_bytes

# (alpha, beta): safe first, then the BMP paper's kind of approximate settings.
SETTINGS = ((1.0, 1.0), (0.9, 1.0), (1.0, 0.5), (0.8, 0.5))


def build_in_child(args: list[str]) -> tuple[float, float]:
    """Run a build_child command; returns (seconds, peak resident MB) of that child alone."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lsr.bench.build_child", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"build failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-3000:]}")
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def save_docs(path: Path, ids: list[str], v: SparseVectors) -> None:
    np.savez(path, ids=np.array(ids, dtype=object), indptr=v.indptr, indices=v.indices, values=v.values,
             vocab=json.dumps(list(v.vocab)))


def time_queries(search: Callable[[int], list[str]], n_queries: int) -> tuple[np.ndarray, list[list[str]]]:
    """Per-query latency (seconds) and results of one pass."""
    lat = np.empty(n_queries)
    results = []
    for i in range(n_queries):
        t0 = time.perf_counter()
        ids = search(i)
        lat[i] = time.perf_counter() - t0
        results.append(ids)
    return lat, results


def recall(results: list[list[str]], truth: list[list[str]], k: int) -> float:
    scored = [(len(set(r[:k]) & set(t[:k])) / len(t[:k])) for r, t in zip(results, truth) if t]
    return float(np.mean(scored)) if scored else float("nan")


def bmp_query(terms: np.ndarray, weights: np.ndarray, vocab: list[str]) -> dict[str, int]:
    """bmp takes integer query weights (and rescales them to its own small range internally)."""
    if not len(weights):
        return {}
    factor = 255.0 / weights.max()
    return {vocab[t]: max(1, int(round(w * factor))) for t, w in zip(terms, weights)}


def run_exact_benchmark(
    dataset: str = "real",
    n_docs: int = 1_000_000,
    collections: tuple[str, ...] = FULL_COLLECTIONS,
    k_values: tuple[int, ...] = (10, 1000),
    block_size: int = 32,
    reorder: str = "dominant",
    settings: tuple[tuple[float, float], ...] = SETTINGS,
    repeats: int = 3,
    max_queries: int | None = None,
    lucene: bool = True,
    out_dir: str | Path = "evaluation/results/exact",
    work_dir: str | Path | None = None,
) -> dict:
    """Build every system on ``dataset`` ("real" or "synth") and time it; returns the results."""
    import numba

    from lsr.encoders import SpladeEncoder
    from lsr.retrieval import Retriever

    numba.set_num_threads(1)
    encoder = SpladeEncoder("splade-tiny")
    real = real_data(encoder, collections)
    if dataset == "synth":
        docs = synthesize(real.docs, n_docs, seed=0)
        data = EncodedCollection([f"s{i}" for i in range(n_docs)], docs, real.query_ids, real.queries)
    elif dataset == "real":
        data = real
    else:
        raise ValueError(f"dataset must be 'real' or 'synth', got {dataset!r}")
    n_q = min(len(data.query_ids), max_queries or len(data.query_ids))
    work = Path(work_dir or tempfile.mkdtemp(prefix=f"lsr-bench-{dataset}-"))
    work.mkdir(parents=True, exist_ok=True)
    docs_file = work / "docs.npz"
    save_docs(docs_file, data.doc_ids, data.docs)

    out = {"dataset": dataset, "collections": list(collections), "docs": len(data.doc_ids), "queries": n_q, "stats": {"docs": vector_stats(data.docs)},
           "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "threads": 1},
           "settings": {"block_size": block_size, "reorder": reorder, "quantization": "u8", "repeats": repeats},
           "builds": {}, "runs": []}
    if dataset == "synth":
        out["stats"]["real_seed_docs"] = vector_stats(real.docs)

    ours_dir = work / "lsr"
    secs, rss = build_in_child(["lsr", str(docs_file), str(ours_dir), "--block-size", str(block_size), "--reorder", reorder])
    out["builds"]["lsr"] = {"seconds": secs, "peak_rss_mb": rss, "bytes": dir_bytes(ours_dir)}
    index = Retriever.load(ours_dir, mmap=False)
    arrays = index.index
    out["builds"]["lsr"]["bytes_exact_search"] = int(
        arrays.postings_indptr.nbytes + arrays.postings_docs.nbytes + arrays.postings_impacts.nbytes + arrays.blocks.nbytes
    )
    queries = [data.queries.take([i]) for i in range(n_q)]
    kmax = max(k_values)
    truth_all = index.search_encoded(data.queries.take(range(n_q)), kmax, mode="exhaustive")
    truth = [r.ids for r in truth_all]

    systems: dict[str, tuple[dict, Callable[[int, int], list[str]]]] = {}
    systems["lsr exhaustive"] = ({"alpha": 1.0, "beta": 1.0},
                                 lambda i, k: index.search_encoded(queries[i], k, mode="exhaustive")[0].ids)
    for alpha, beta in settings:
        systems[f"lsr bmp a={alpha} b={beta}"] = (
            {"alpha": alpha, "beta": beta},
            lambda i, k, a=alpha, b=beta: index.search_encoded(queries[i], k, alpha=a, beta=b)[0].ids,
        )
    try:
        import bmp
    except ImportError:
        out["builds"]["bmp"] = {"skipped": "bmp is not installed (pip install '.[bench]')"}
    else:
        bmp_file = work / "bmp" / "index.bmp"
        secs, rss = build_in_child(["bmp", str(docs_file), str(bmp_file), "--block-size", str(block_size), "--same-as", str(ours_dir)])
        out["builds"]["bmp"] = {"seconds": secs, "peak_rss_mb": rss, "bytes": dir_bytes(bmp_file)}
        searcher = bmp.Searcher(str(bmp_file))
        bq = [bmp_query(*queries[i].row(0), index.vocab) for i in range(n_q)]
        for alpha, beta in settings:
            systems[f"bmp a={alpha} b={beta}"] = (
                {"alpha": alpha, "beta": beta},
                lambda i, k, a=alpha, b=beta: list(searcher.search(bq[i], k=k, alpha=a, beta=b)[0]),
            )
    if lucene and dataset == "real":
        from lsr.bench.lucene import lucene_system

        try:
            build, search = lucene_system(index.index, work / "lucene")
            out["builds"]["lucene"] = build
            systems["lucene impact"] = ({}, lambda i, k: search(queries[i], k))
        except Exception as e:  # Java or pyserini missing: say so in the results
            out["builds"]["lucene"] = {"skipped": f"{type(e).__name__}: {e}"}

    for k in k_values:
        lat = {name: [] for name in systems}
        res = {}
        for _ in range(repeats):  # interleave systems across repeats so noise hits all alike
            for name, (_, fn) in systems.items():
                fn(0, k)  # warm
                t, r = time_queries(lambda i: fn(i, k), n_q)
                lat[name].append(t)
                res[name] = r
        for name, (knobs, _) in systems.items():
            per_query = np.median(np.stack(lat[name]), axis=0) * 1e3
            out["runs"].append({
                "system": name, "k": k, **knobs,
                "mean_ms": float(per_query.mean()), "p50_ms": float(np.percentile(per_query, 50)),
                "p99_ms": float(np.percentile(per_query, 99)), f"recall_at_k": recall(res[name], truth, k),
            })
    _ratios(out)
    write_results(out, Path(out_dir))
    return out


def _ratios(out: dict) -> None:
    """Anchor mean latency / ours, for matching settings (>1: we are faster)."""
    by = {(r["system"], r["k"]): r for r in out["runs"]}
    for r in out["runs"]:
        name = r["system"]
        ours = None
        if name.startswith("bmp "):
            ours = by.get(("lsr " + name, r["k"]))
        elif name == "lucene impact":
            ours = by.get(("lsr bmp a=1.0 b=1.0", r["k"]))
        if ours:
            r["anchor_over_ours"] = r["mean_ms"] / ours["mean_ms"]


def write_results(out: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"exact_{out['dataset']}"
    (out_dir / f"{stem}.json").write_text(json.dumps(out, indent=2))
    lines = [
        f"# Exact search benchmark: {out['dataset']} ({out['docs']:,} docs, {out['queries']} queries)",
        "",
        "One query at a time, one thread, same u8 impacts and document order for every system; "
        f"latency is the per-query median over {out['settings']['repeats']} interleaved passes, then mean / p99 "
        "over queries. Recall is against lsr's exhaustive scorer. `anchor/ours` > 1 means lsr is faster.",
        "",
        "| system | k | mean ms | p50 ms | p99 ms | recall@k | anchor/ours |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["runs"]:
        ratio = f"{r['anchor_over_ours']:.2f}" if "anchor_over_ours" in r else ""
        lines.append(f"| {r['system']} | {r['k']} | {r['mean_ms']:.3f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                     f"{r['recall_at_k']:.4f} | {ratio} |")
    lines += ["", "## Builds", "", "| system | seconds | peak RSS MB | bytes |", "|---|---:|---:|---:|"]
    for name, b in out["builds"].items():
        if "skipped" in b:
            lines.append(f"| {name} | skipped: {b['skipped']} | | |")
        else:
            lines.append(f"| {name} | {b['seconds']:.1f} | {b['peak_rss_mb']:.0f} | {b['bytes']:,} |")
    lines += ["", "## Data statistics", "", "| statistic | " + " | ".join(out["stats"]) + " |",
              "|---|" + "---:|" * len(out["stats"])]
    keys = next(iter(out["stats"].values())).keys()
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(f"{s[key]:.4g}" for s in out["stats"].values()) + " |")
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    _plot(out, out_dir / f"{stem}.png")


def _plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({r["k"] for r in out["runs"]})
    fig, axes = plt.subplots(1, len(ks), figsize=(6 * len(ks), 4.5), squeeze=False)
    for ax, k in zip(axes[0], ks):
        for family, marker in (("lsr", "o"), ("bmp", "s"), ("lucene", "^")):
            runs = [r for r in out["runs"] if r["k"] == k and r["system"].startswith(family)]
            if runs:
                ax.scatter([r["mean_ms"] for r in runs], [r["recall_at_k"] for r in runs], marker=marker, label=family)
                for r in runs:
                    ax.annotate(r["system"].replace(family, "").strip() or family, (r["mean_ms"], r["recall_at_k"]),
                                fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("mean latency per query (ms, log)")
        ax.set_ylabel(f"recall@{k} vs exact")
        ax.set_title(f"{out['dataset']}: {out['docs']:,} docs, k={k}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
