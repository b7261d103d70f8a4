"""`lsr bench exact`: exact search on four workloads, side by side with bmp, PISA, Lucene and a
scipy brute force.

Workloads: ``splade-real`` (splade-tiny encodings of the offline collections), ``splade-synth``
(synthetic docs shaped like them), ``splade-gcide`` (gcide, 126,240 dictionary entries, encoded
by splade-tiny) and ``bm25-gcide`` (gcide as this project's BM25 impacts), the gcide ones queried
with MS MARCO dev-small. Every system searches the same documents (lsr's document order), one
query at a time, on one thread; latencies are medians over interleaved passes. Recall is against
the float64 brute-force top-k of the float vectors (tie-aware: a document scoring within 1e-9 of
the k-th counts as found), so the integer impacts the anchors keep (bmp, Lucene: u8 rounding;
PISA: truncation) show as recall below 1, and so would any inexactness of ours.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from lsr.bench import EXACT_WORKLOADS as WORKLOADS
from lsr.bench import scratch_work_dir
from lsr.bench.data import FULL_COLLECTIONS, EncodedCollection, real_data, vector_stats
from lsr.bench.synth import synthesize
from lsr.data import SparseVectors
from lsr.util import cpu_name, dir_bytes

STRATEGIES = ("exhaustive", "blockmax", "superblock")
PISA_ALGORITHMS = ("maxscore", "block_max_wand")
FLOOR = "scipy sparse product"  # not an anchor: the floor every exact strategy must beat
TIE_TOLERANCE = 1e-9  # relative: scores this close to the k-th are ties


def build_in_child(args: list[str]) -> dict[str, float]:
    """Run a build_child command; returns the wall ``seconds``, ``peak_rss_mb`` and ``cpu_seconds``
    of that child alone."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lsr.bench.build_child", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"build failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-3000:]}")
    return {"seconds": seconds, **json.loads(proc.stdout.strip().splitlines()[-1])}


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


class FloatTruth:
    """Float64 brute force over the float vectors: the reference top-k and a tie-aware recall."""

    def __init__(self, docs: SparseVectors, doc_ids: list[str]) -> None:
        m = sp.csr_matrix((docs.values.astype(np.float32).astype(np.float64), docs.indices, docs.indptr),
                          shape=(len(docs), len(docs.vocab)))
        self.by_term = m.tocsc()
        self.position = {d: i for i, d in enumerate(doc_ids)}

    def scores(self, q: SparseVectors) -> np.ndarray:
        terms, weights = q.row(0)
        return np.asarray(self.by_term[:, terms] @ weights.astype(np.float32).astype(np.float64)).ravel()

    def recall(self, found: list[str], scores: np.ndarray, k: int) -> float | None:
        """Found documents scoring at least the k-th true score (within the tolerance), over
        min(k, matching documents); None for a query nothing matches."""
        matching = int(np.count_nonzero(scores > 0))
        want = min(k, matching)
        if want == 0:
            return None
        kth = np.partition(scores, scores.shape[0] - want)[scores.shape[0] - want]
        good = sum(1 for d in set(found[:k]) if scores[self.position[d]] >= kth - TIE_TOLERANCE * abs(kth))
        return min(1.0, good / want)


def scipy_floor(docs: SparseVectors, doc_ids: list[str]) -> Callable[[SparseVectors, int], list[str]]:
    """The one-line brute force every exact strategy must beat: a sparse product, then a partial sort."""
    by_term = sp.csr_matrix((docs.values, docs.indices, docs.indptr), shape=(len(docs), len(docs.vocab))).tocsc()

    def search(q: SparseVectors, k: int) -> list[str]:
        terms, weights = q.row(0)
        s = np.asarray(by_term[:, terms] @ weights).ravel()
        top = np.argpartition(-s, min(k, s.shape[0] - 1))[:k]
        top = top[np.argsort(-s[top], kind="stable")]
        return [doc_ids[i] for i in top if s[i] > 0]

    return search


def load_workload(workload: str, n_docs: int) -> tuple[EncodedCollection, dict]:
    """The documents and queries of a workload, and its data statistics."""
    from lsr.bench.data import encoded_collection
    from lsr.bench.gcide import bm25_gcide
    from lsr.encoders import SpladeEncoder

    if workload == "bm25-gcide":
        data, _ = bm25_gcide()
        return data, {"docs": vector_stats(data.docs)}
    encoder = SpladeEncoder("splade-tiny")
    if workload == "splade-gcide":
        data = encoded_collection("gcide", encoder)
        return data, {"docs": vector_stats(data.docs)}
    real = real_data(encoder, FULL_COLLECTIONS)
    if workload == "splade-real":
        return real, {"docs": vector_stats(real.docs)}
    docs = synthesize(real.docs, n_docs, seed=0)
    return EncodedCollection([f"s{i}" for i in range(n_docs)], docs, real.query_ids, real.queries), \
        {"docs": vector_stats(docs), "real_seed_docs": vector_stats(real.docs)}


@scratch_work_dir("lsr-bench-exact-")
def run_exact_benchmark(
    workload: str = "splade-real",
    n_docs: int = 1_000_000,
    k_values: tuple[int, ...] = (10, 1000),
    block_size: int = 32,
    reorder: str = "dominant",
    repeats: int = 3,
    max_queries: int | None = None,
    lucene: bool = True,
    pisa: bool = True,
    out_dir: str | Path = "evaluation/results/exact",
    work_dir: str | Path | None = None,
) -> dict:
    """Build every system on ``workload`` (one of :data:`WORKLOADS`) and time it; returns the results."""
    import numba

    from lsr.retrieval import Retriever

    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}, got {workload!r}")
    numba.set_num_threads(1)
    data, stats = load_workload(workload, n_docs)
    n_q = min(len(data.query_ids), max_queries or len(data.query_ids))
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    docs_file = work / "docs.npz"
    save_docs(docs_file, data.doc_ids, data.docs)

    out = {"workload": workload, "docs": len(data.doc_ids), "queries": n_q, "stats": stats,
           "machine": {"cores": os.cpu_count(), "cpu": cpu_name(), "python": platform.python_version(), "threads": 1},
           "settings": {"block_size": block_size, "reorder": reorder, "quantization": "u16", "repeats": repeats,
                        "recall": f"against the float64 brute force of the float vectors, ties within {TIE_TOLERANCE:g} relative"},
           "builds": {}, "runs": []}
    ours_dir = work / "lsr"
    out["builds"]["lsr"] = {**build_in_child(["lsr", str(docs_file), str(ours_dir), "--block-size", str(block_size), "--reorder", reorder,
                                              "--quantization", "u16"]), "bytes": dir_bytes(ours_dir)}
    index = Retriever.load(ours_dir, mmap=False)
    queries = [data.queries.take([i]) for i in range(n_q)]
    truth = FloatTruth(data.docs, data.doc_ids)
    true_scores = [truth.scores(q) for q in queries]

    systems: dict[str, Callable[[int, int], list[str]]] = {}
    systems["lsr exact"] = lambda i, k: index.search_encoded(queries[i], k)[0].ids
    for strategy in STRATEGIES:
        systems[f"lsr exact strategy={strategy}"] = lambda i, k, s=strategy: index.search_encoded(queries[i], k, strategy=s)[0].ids
    floor = scipy_floor(data.docs, data.doc_ids)
    systems[FLOOR] = lambda i, k: floor(queries[i], k)
    try:
        import bmp
    except ImportError:
        out["builds"]["bmp"] = {"skipped": "bmp is not installed (pip install '.[bench]')"}
    else:
        bmp_file = work / "bmp" / "index.bmp"
        out["builds"]["bmp"] = {**build_in_child(["bmp", str(docs_file), str(bmp_file), "--block-size", str(block_size), "--same-as",
                                                  str(ours_dir)]), "bytes": dir_bytes(bmp_file)}
        searcher = bmp.Searcher(str(bmp_file))
        bq = [bmp_query(*queries[i].row(0), index.vocab) for i in range(n_q)]
        # bmp panics on a query without terms (one whose words are all outside the vocabulary)
        systems["bmp a=1.0 b=1.0"] = lambda i, k: list(searcher.search(bq[i], k=k, alpha=1.0, beta=1.0)[0]) if bq[i] else []
    if pisa:
        try:
            from lsr.bench.pisa import pisa_system

            build, factory = pisa_system(index.index, work)
            out["builds"]["pisa"] = build
            for algorithm in PISA_ALGORITHMS:
                search = factory(algorithm)
                systems[f"pisa {algorithm}"] = lambda i, k, f=search: f(queries[i], k)
        except Exception as e:  # pyterrier-pisa missing: say so in the results
            out["builds"]["pisa"] = {"skipped": f"{type(e).__name__}: {e}"}
    if lucene:
        from lsr.bench.lucene import lucene_system

        try:
            build, search = lucene_system(index.index, work / "lucene")
            out["builds"]["lucene"] = build
            systems["lucene impact"] = lambda i, k: search(queries[i], k)
        except Exception as e:  # Java or pyserini missing: say so in the results
            out["builds"]["lucene"] = {"skipped": f"{type(e).__name__}: {e}"}

    for k in k_values:
        lat = {name: [] for name in systems}
        res = {}
        names = list(systems)
        for rep in range(repeats):  # interleaved, each repeat starting elsewhere: noise and cold caches hit all alike
            start = rep * len(names) // repeats
            for name in names[start:] + names[:start]:
                fn = systems[name]
                fn(0, k)  # warm
                t, r = time_queries(lambda i: fn(i, k), n_q)
                lat[name].append(t)
                res[name] = r
        for name in systems:
            per_query = np.median(np.stack(lat[name]), axis=0) * 1e3
            recalls = [truth.recall(found, s, k) for found, s in zip(res[name], true_scores)]
            recalls = [r for r in recalls if r is not None]
            run = {"system": name, "k": k, "mean_ms": float(per_query.mean()), "p50_ms": float(np.percentile(per_query, 50)),
                   "p99_ms": float(np.percentile(per_query, 99)), "recall_at_k": float(np.mean(recalls)) if recalls else float("nan"),
                   "min_query_recall": float(min(recalls)) if recalls else float("nan")}
            if name == "lsr exact":  # the planner's choices (an untimed pass: they do not depend on time)
                used = [index.search_encoded(q, k)[0].strategy for q in queries]
                run["strategy_mix"] = {s: used.count(s) / len(used) for s in sorted(set(used))}
            out["runs"].append(run)
    out["ratios"] = ratios(out)
    write_results(out, Path(out_dir))
    return out


def run_reorder_study(workload: str = "splade-real", n_docs: int = 1_000_000, k_values: tuple[int, ...] = (10, 1000),
                      block_size: int = 32, repeats: int = 3, max_queries: int | None = None,
                      out_dir: str | Path = "evaluation/results/exact") -> dict:
    """Document orders none / dominant / bp (graph bisection): build seconds (on all numba's
    threads, which bp uses), block-max entries, and the latency of every exact strategy on
    each (one thread), interleaved in one run."""
    import numba

    from lsr.index import SparseIndex
    from lsr.index.reorder import REORDERINGS

    data, stats = load_workload(workload, n_docs)
    n_q = min(len(data.query_ids), max_queries or len(data.query_ids))
    queries = [data.queries.take([i]) for i in range(n_q)]
    SparseIndex.build(data.docs.take(range(min(64, len(data.docs)))), data.doc_ids[:64], reorder="bp")  # compile
    out = {"workload": workload, "docs": len(data.doc_ids), "queries": n_q, "block_size": block_size, "repeats": repeats,
           "build_threads": numba.get_num_threads(), "builds": {}, "runs": []}
    indexes = {}
    for order in REORDERINGS:
        start = time.perf_counter()
        indexes[order] = SparseIndex.build(data.docs, data.doc_ids, block_size=block_size, reorder=order)
        out["builds"][order] = {"seconds": time.perf_counter() - start,
                                "block_entries": int(indexes[order].blocks.tb_blocks.shape[0])}
    numba.set_num_threads(1)
    prepared = {order: [ix.prepare(q) for q in queries] for order, ix in indexes.items()}
    for k in k_values:
        lat: dict[tuple[str, str], list[np.ndarray]] = {}
        for _ in range(repeats):
            for order, ix in indexes.items():
                for strategy in ("auto", *STRATEGIES):
                    ix.search(prepared[order][0], k, strategy=strategy)
                    t, _ = time_queries(lambda i: ix.search(prepared[order][i], k, strategy=strategy), n_q)
                    lat.setdefault((order, strategy), []).append(t)
        for (order, strategy), ts in lat.items():
            per_query = np.median(np.stack(ts), axis=0) * 1e3
            out["runs"].append({"reorder": order, "strategy": strategy, "k": k, "mean_ms": float(per_query.mean()),
                                "p99_ms": float(np.percentile(per_query, 99))})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"reorder_{workload}"
    (out_dir / f"{stem}.json").write_text(json.dumps(out, indent=2))
    lines = [f"# Document order and exact search: {workload} ({out['docs']:,} docs, {n_q} queries, block size {block_size})", "",
             f"| reorder | build s ({out['build_threads']} threads) | block entries |", "|---|---:|---:|"]
    lines += [f"| {o} | {b['seconds']:.1f} | {b['block_entries']:,} |" for o, b in out["builds"].items()]
    lines += ["", "Mean ms per query (SparseIndex.search, one thread; median of interleaved passes):", "",
              "| k | strategy | " + " | ".join(REORDERINGS) + " |", "|---:|---|" + "---:|" * len(REORDERINGS)]
    for k in k_values:
        for strategy in ("auto", *STRATEGIES):
            cells = [next(r["mean_ms"] for r in out["runs"] if (r["reorder"], r["strategy"], r["k"]) == (o, strategy, k))
                     for o in REORDERINGS]
            lines.append(f"| {k} | {strategy} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return out


def block_entries(docs: SparseVectors, order: np.ndarray, block_size: int) -> int:
    """(term, block) pairs of ``docs`` put in ``order`` (new position -> old): the block-max entries."""
    position = np.empty(len(docs), dtype=np.int64)
    position[order] = np.arange(len(docs))
    blocks = np.repeat(position // block_size, np.diff(docs.indptr))
    pairs = sp.csr_matrix((np.ones(docs.nnz, dtype=np.int8), (blocks, docs.indices)),
                          shape=(-(-len(docs) // block_size), len(docs.vocab)))
    pairs.sum_duplicates()
    return int(pairs.nnz)


def run_bp_timing(n_docs: int = 1_000_000, block_size: int = 32, iterations: tuple[int, ...] = (10, 5),
                  out_dir: str | Path = "evaluation/results/exact") -> dict:
    """Seconds of BP reordering alone (``reorder_documents(docs, "bp")``) of ``n_docs`` synthetic
    documents, and the block-max entries it leaves: on one thread and on all numba's at the
    default iteration cap, then on all at each lower cap of ``iterations`` (what fewer swap
    rounds save, and what they cost)."""
    import numba

    from lsr.bench.data import synthetic_data
    from lsr.encoders import SpladeEncoder
    from lsr.index.reorder import BP_ITERATIONS, reorder_documents

    docs = synthetic_data(real_data(SpladeEncoder("splade-tiny"), FULL_COLLECTIONS), n_docs).docs
    reorder_documents(docs.take(range(min(256, len(docs)))), "bp", block_size)  # compile
    all_threads = numba.config.NUMBA_NUM_THREADS
    out = {"workload": "splade-synth", "docs": len(docs), "postings": int(docs.nnz), "block_size": block_size,
           "cores": os.cpu_count(), "block_entries_input_order": block_entries(docs, np.arange(len(docs)), block_size),
           "runs": []}
    runs = [(1, BP_ITERATIONS), (all_threads, BP_ITERATIONS)] + [(all_threads, it) for it in iterations]
    for n_threads, n_iters in runs:
        numba.set_num_threads(n_threads)
        start = time.perf_counter()
        order = reorder_documents(docs, "bp", block_size, bp_iterations=n_iters)
        out["runs"].append({"threads": n_threads, "iterations": n_iters, "seconds": time.perf_counter() - start,
                            "block_entries": block_entries(docs, order, block_size)})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"bp_timing_{out['workload']}"
    (out_dir / f"{stem}.json").write_text(json.dumps(out, indent=2))
    lines = [f"# BP reordering time: {out['docs']:,} synthetic docs ({out['postings']:,} postings), block size {block_size}",
             "", f"`reorder_documents(docs, \"bp\", bp_iterations=...)` on a {out['cores']}-core machine; block entries "
             f"in the input order: {out['block_entries_input_order']:,}.", "",
             "| threads | iterations (at most, per bisection) | seconds | block entries |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['threads']} | {r['iterations']} | {r['seconds']:.1f} | {r['block_entries']:,} |" for r in out["runs"]]
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return out


def ratios(out: dict) -> list[dict]:
    """One row per k: lsr's default exact mode, the fastest anchor, and our fastest forced strategy."""
    rows = []
    for k in sorted({r["k"] for r in out["runs"]}):
        runs = [r for r in out["runs"] if r["k"] == k]
        ours = next(r for r in runs if r["system"] == "lsr exact")
        anchors = [r for r in runs if not r["system"].startswith(("lsr", FLOOR))]
        floor = next(r for r in runs if r["system"] == FLOOR)
        forced = [r for r in runs if r["system"].startswith("lsr exact strategy=")]
        best_anchor = min(anchors, key=lambda r: r["mean_ms"]) if anchors else None
        best_forced = min(forced, key=lambda r: r["mean_ms"])
        row = {"workload": out["workload"], "k": k,
               "lsr": {"mean_ms": ours["mean_ms"], "recall": ours["recall_at_k"], "strategy mix": ours["strategy_mix"]},
               "best_anchor": ({"system": best_anchor["system"], "mean_ms": best_anchor["mean_ms"], "recall": best_anchor["recall_at_k"]}
                               if best_anchor else None),
               "best_forced": {"strategy": best_forced["system"].split("=", 1)[1], "mean_ms": best_forced["mean_ms"]},
               "floor": {"system": FLOOR, "mean_ms": floor["mean_ms"], "lsr_over_floor": ours["mean_ms"] / floor["mean_ms"]}}
        if best_anchor:
            row["lsr_over_best_anchor"] = ours["mean_ms"] / best_anchor["mean_ms"]
        row["lsr_over_best_forced"] = ours["mean_ms"] / best_forced["mean_ms"]
        rows.append(row)
    return rows


def write_results(out: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"exact_{out['workload']}"
    (out_dir / f"{stem}.json").write_text(json.dumps(out, indent=2))
    lines = [
        f"# Exact search benchmark: {out['workload']} ({out['docs']:,} docs, {out['queries']} queries)",
        "",
        "One query at a time, one thread, lsr's document order for every system; latency is the per-query median over "
        f"{out['settings']['repeats']} interleaved passes, then mean / p50 / p99 over queries. Recall@k is "
        f"{out['settings']['recall']} (anchors keep integer impacts: u8 rounding for bmp and Lucene, truncation for PISA).",
        "",
        "| workload | k | lsr exact ms | recall | strategy mix | best anchor | ms | recall | lsr / anchor | best forced | ms | lsr / forced | lsr / scipy floor |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in out["ratios"]:
        a = r["best_anchor"] or {"system": "-", "mean_ms": float("nan"), "recall": float("nan")}
        mix = ", ".join(f"{s} {f:.0%}" for s, f in r["lsr"]["strategy mix"].items())
        lines.append(f"| {r['workload']} | {r['k']} | {r['lsr']['mean_ms']:.3f} | {r['lsr']['recall']:.4f} | {mix} | {a['system']} | "
                     f"{a['mean_ms']:.3f} | {a['recall']:.4f} | {r.get('lsr_over_best_anchor', float('nan')):.2f} | "
                     f"{r['best_forced']['strategy']} | {r['best_forced']['mean_ms']:.3f} | {r['lsr_over_best_forced']:.2f} | "
                     f"{r['floor']['lsr_over_floor']:.2f} |")
    lines += ["", "| system | k | mean ms | p50 ms | p99 ms | recall@k | worst query recall |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in out["runs"]:
        lines.append(f"| {r['system']} | {r['k']} | {r['mean_ms']:.3f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                     f"{r['recall_at_k']:.4f} | {r['min_query_recall']:.3f} |")
    lines += ["", "## Builds", "", "| system | seconds | peak RSS MB | bytes |", "|---|---:|---:|---:|"]
    for name, b in out["builds"].items():
        if "skipped" in b:
            lines.append(f"| {name} | skipped: {b['skipped']} | | |")
        else:
            lines.append(f"| {name} | {b['seconds']:.1f} | {b.get('peak_rss_mb', float('nan')):.0f} | {b['bytes']:,} |")
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
        for family, marker in (("lsr", "o"), ("bmp", "s"), ("lucene", "^"), ("pisa", "D"), ("scipy", "x")):
            runs = [r for r in out["runs"] if r["k"] == k and r["system"].startswith(family)]
            if runs:
                ax.scatter([r["mean_ms"] for r in runs], [r["recall_at_k"] for r in runs], marker=marker, label=family)
                for r in runs:
                    ax.annotate(r["system"].replace(family, "").strip() or family, (r["mean_ms"], r["recall_at_k"]),
                                fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("mean latency per query (ms, log)")
        ax.set_ylabel(f"recall@{k} vs float64 brute force")
        ax.set_title(f"{out['workload']}: {out['docs']:,} docs, k={k}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
