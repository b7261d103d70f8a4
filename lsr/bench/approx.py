"""`lsr bench approx`: approximate search (mode="approx") against Seismic (Rust, `pyseismic-lsr`).

Both systems index exactly the same vectors (rows sorted, duplicate terms summed, weights
quantized to u8 as lsr scores them) with the same build settings, one build thread each, and
are searched one query at a time on one thread through their Python single-query calls (lsr's
thin entry point ``SparseIndex.approx_searcher``, rows mapped to string ids as Seismic returns
them; the general ``Retriever.search_encoded`` is timed too at the cheapest points), over a sweep
of (query_cut, heap_factor). Corpora: ``real`` (every full collection in ../shared/data),
``synth`` (grown from real to ``n_docs``) and ``gcide`` (126,240 dictionary entries queried with
MS MARCO dev-small questions), all encoded with splade-tiny. Recall@k is against lsr's exhaustive scorer. Each system's curve is
the cheapest point per recall over all its builds and knobs; the ratio table compares the
cheapest points reaching recall 0.90, 0.95 and 0.97. Results: JSON, markdown and a plot.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from lsr.bench import scratch_work_dir
from lsr.bench.data import FULL_COLLECTIONS, encoded_collection, encoder_fingerprint, real_data, synthetic_data, vector_stats
from lsr.bench.build_child import dequantized
from lsr.bench.exact import build_in_child, recall, save_docs
from lsr.util import cpu_name, dir_bytes, machine_threads
from lsr.data import SparseVectors
from lsr.index.approx import ApproxSettings

QUERY_CUTS = (3, 5, 8, 10, 15, 20, 30)
HEAP_FACTORS = (1.0, 0.9, 0.8, 0.7, 0.6)
TARGETS = (0.90, 0.95, 0.97)
# Seismic's recommendation for MS MARCO passages with SPLADE (8.8M docs, ~119 terms a doc over
# 30,522 terms: a mean posting list of ~34,500) is n_postings ~4,000. Scaled to a corpus, the
# same kept fraction of each mean list is 4000 / 34,500 of its mean list length.
MSMARCO_N_POSTINGS, MSMARCO_MEAN_LIST = 4000, 34_500
BUILD_MULTIPLIERS = {"real": (1, 4, 16), "synth": (1, 2), "gcide": (1, 4, 16)}
DATASETS = tuple(BUILD_MULTIPLIERS)
# "cpu" times the calling thread's CPU (time.thread_time): a fallback when the machine cannot be
# had alone, blind to waiting for a core but not to cache and memory contention. Wall time is
# the measure to quote.
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
DEFAULT_QUERIES = {"gcide": 1000}  # of MS MARCO dev-small's 6,980: keeps one run under ten minutes


def scaled_n_postings(docs: SparseVectors) -> int:
    """Seismic's recommended n_postings scaled to this corpus's mean posting-list length."""
    df = np.bincount(docs.indices, minlength=len(docs.vocab))
    return max(1, round(MSMARCO_N_POSTINGS * df[df > 0].mean() / MSMARCO_MEAN_LIST))


def canonical(v: SparseVectors) -> SparseVectors:
    """Rows sorted by term with duplicate terms summed: the one form both systems accept."""
    m = sp.csr_matrix((v.values, v.indices, v.indptr), shape=(len(v), len(v.vocab)))
    m.sum_duplicates()
    return SparseVectors(m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float32), v.vocab)


@scratch_work_dir("lsr-bench-approx-")
def run_approx_benchmark(
    dataset: str = "real",
    n_docs: int = 1_000_000,
    collections: tuple[str, ...] = FULL_COLLECTIONS,
    n_postings: tuple[int, ...] | None = None,
    centroid_fraction: float = 0.1,
    summary_energy: float = 0.4,
    max_fraction: float = 1.5,
    query_cuts: tuple[int, ...] = QUERY_CUTS,
    heap_factors: tuple[float, ...] = HEAP_FACTORS,
    k: int = 10,
    repeats: int = 2,
    build_repeats: int = 3,
    max_queries: int | None = None,
    batch_threads: int = 2,
    out_dir: str | Path = "evaluation/results/approx",
    clock: str = "wall",
    work_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Build both systems on ``dataset`` ("real", "synth" or "gcide") per n_postings and sweep the knobs."""
    import numba
    import seismic

    from lsr.encoders import SpladeEncoder
    from lsr.retrieval import Retriever

    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    numba.set_num_threads(1)
    encoder = SpladeEncoder("splade-tiny")
    if dataset == "gcide":
        data = encoded_collection("gcide", encoder)
    else:
        data = real_data(encoder, collections)
        data = synthetic_data(data, n_docs) if dataset == "synth" else data
    docs = canonical(data.docs)
    n_q = min(len(data.query_ids), max_queries or DEFAULT_QUERIES.get(dataset) or len(data.query_ids))
    queries = canonical(data.queries.take(range(n_q)))
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    docs_file, seismic_docs = work / "docs.npz", work / "seismic-docs.npz"
    save_docs(docs_file, data.doc_ids, docs)
    save_docs(seismic_docs, data.doc_ids, dequantized(docs))  # so Seismic's build process needs no lsr kernels
    _warm_build_cache(work, data.doc_ids, docs)
    scaled = scaled_n_postings(docs)
    n_postings = n_postings or tuple(scaled * m for m in BUILD_MULTIPLIERS[dataset])
    out: dict[str, Any] = {
        "dataset": dataset, "docs": len(docs), "queries": n_q, "k": k, "stats": {"docs": vector_stats(docs)},
        "encoder": {"model": encoder.name, "fingerprint": encoder_fingerprint(encoder), **encoder.settings()},
        "machine": {"cores": os.cpu_count(), "cpu": cpu_name(), "python": platform.python_version(), "search_threads": 1, "build_threads": machine_threads(),
                    "seismic": getattr(seismic, "__version__", "pyseismic-lsr 0.5.4")},
        "settings": {"scaled_n_postings": scaled, "n_postings": list(n_postings), "centroid_fraction": centroid_fraction,
                     "summary_energy": summary_energy, "max_fraction": max_fraction, "repeats": repeats, "build_repeats": build_repeats, "clock": clock,
                     "query_cuts": list(query_cuts), "heap_factors": list(heap_factors), "quantization": "u8"},
        "builds": [], "runs": [],
    }
    q_raw = [queries.row(i) for i in range(n_q)]
    s_terms = [np.array([str(t) for t in queries.row(i)[0]], dtype=seismic.get_seismic_string()) for i in range(n_q)]
    s_values = [queries.row(i)[1].astype(np.float32) for i in range(n_q)]
    truth: list[list[str]] | None = None
    for npost in n_postings:
        settings = ApproxSettings(n_postings=int(npost), centroid_fraction=centroid_fraction, summary_energy=summary_energy,
                                  max_fraction=max_fraction)
        knobs_json = json.dumps(dataclasses.asdict(settings))
        ours_dir, seismic_file = work / f"lsr-{npost}", work / f"seismic-{npost}.index.seismic"  # Seismic adds the suffix
        timed = _interleaved_builds(
            {"lsr": lambda out: ["lsr", str(docs_file), str(out), "--reorder", "dominant", "--approx", knobs_json],
             "seismic": lambda out: ["seismic", str(seismic_docs), str(out), "--approx", knobs_json]},
            {"lsr": ours_dir, "seismic": work / f"seismic-{npost}"}, work / "earlier-builds", build_repeats)
        index = Retriever.load(ours_dir, mmap=False)
        approx_stats = {f"approx_{name}": value for name, value in index.manifest["approx"]["stats"].items()}
        out["builds"].append({"system": "lsr", "n_postings": npost, **timed["lsr"], "bytes": dir_bytes(ours_dir),
                              "bytes_approx_search": index.index.approx.nbytes, **approx_stats})
        out["builds"].append({"system": "seismic", "n_postings": npost, **timed["seismic"], "bytes": dir_bytes(seismic_file)})
        searcher = seismic.SeismicIndex.load(str(seismic_file))
        if truth is None:
            truth = [r.ids for r in index.search_encoded(queries, k, mode="exhaustive")]
        doc_ids = index.doc_ids
        for cut in query_cuts:
            for hf in heap_factors:
                thin = index.index.approx_searcher(k, query_cut=cut, heap_factor=hf)
                systems = {
                    "lsr": lambda i: [doc_ids[r] for r in thin.search(*q_raw[i])[0].tolist()],
                    "seismic": lambda i: [d for _, _, d in searcher.search(str(i), s_terms[i], s_values[i], k, cut, hf)],
                }
                lat: dict[str, list[np.ndarray]] = {name: [] for name in systems}
                res = {}
                for _ in range(repeats):  # interleaved, so load changes hit both alike
                    for name, fn in systems.items():
                        fn(0)
                        t, r = time_queries(fn, n_q, CLOCKS[clock])
                        lat[name].append(t)
                        res[name] = r
                work_stats = index.index.approx_work(queries, k, query_cut=cut, heap_factor=hf)
                for name in systems:
                    per_query = np.median(np.stack(lat[name]), axis=0) * 1e6
                    run = {"system": name, "n_postings": npost, "query_cut": cut, "heap_factor": hf,
                           "mean_us": float(per_query.mean()), "p50_us": float(np.percentile(per_query, 50)),
                           "p99_us": float(np.percentile(per_query, 99)), "recall": recall(res[name], truth, k)}
                    if name == "lsr":
                        run["work"] = work_stats
                    out["runs"].append(run)
        _throughput(out, index, searcher, queries, s_terms, s_values, npost, k, batch_threads)
        _tune_held_out(out, index, queries, truth, npost, k, query_cuts, heap_factors)
        out["kernel"] = out.get("kernel", []) + _api_latency(index, queries, out["runs"], npost, k, CLOCKS[clock])
        del index, searcher
    out["ratios"] = ratios(out["runs"])
    out["profile"] = time_model(out["runs"])
    write_results(out, Path(out_dir))
    return out


def _interleaved_builds(commands: dict[str, Any], outs: dict[str, Path], scratch: Path, repeats: int) -> dict[str, dict]:
    """Each system's build ``repeats`` times, the systems alternating, so that a change of machine
    load (or of how fast fresh memory pages come on this VM: one gcide build of ours took 4.8-9.3 s)
    hits both alike. Median seconds, CPU seconds and peak RSS of the runs, and every run's seconds. The last
    run writes to ``outs``; earlier ones write under ``scratch``, emptied after each round."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    for rep in range(repeats):
        last = rep == repeats - 1
        scratch.mkdir(exist_ok=True)
        for name, command in commands.items():
            runs[name].append(build_in_child(command(outs[name] if last else scratch / outs[name].name)))
        shutil.rmtree(scratch)
    return {name: {**{key: float(np.median([run[key] for run in r])) for key in r[0]}, "seconds_runs": [run["seconds"] for run in r]}
            for name, r in runs.items()}


def _warm_build_cache(work: Path, doc_ids: list[str], docs: SparseVectors) -> None:
    """Build a small lsr index once, untimed, so the timed builds load compiled kernels from
    Numba's cache as an installed lsr does, rather than compiling them (Seismic ships compiled)."""
    n = min(len(docs), 2000)
    sample = work / "warm-docs.npz"
    save_docs(sample, doc_ids[:n], docs.take(range(n)))
    build_in_child(["lsr", str(sample), str(work / "warm-lsr"), "--reorder", "dominant", "--approx",
                    json.dumps(dataclasses.asdict(ApproxSettings(n_postings=50)))])


def time_queries(search: Any, n_queries: int, clock: Any) -> tuple[np.ndarray, list[list[str]]]:
    """Per-query latency (seconds, on ``clock``) and results of one pass."""
    lat = np.empty(n_queries)
    results = []
    for i in range(n_queries):
        t0 = clock()
        ids = search(i)
        lat[i] = clock() - t0
        results.append(ids)
    return lat, results


def _api_latency(index: Any, queries: SparseVectors, runs: list[dict], npost: int, k: int, clock: Any) -> list[dict]:
    """At lsr's cheapest point per target recall: the thin entry point's latency (the curve's)
    against the general API's, ``Retriever.search_encoded`` (vocabulary and knob checks, the
    segment view, Hits and SearchResult objects): what that convenience costs per query."""
    rows = [queries.take([i]) for i in range(len(queries))]
    out = []
    for target in TARGETS:
        point = _cheapest(runs, "lsr", target, npost)
        if point is None:
            continue
        knobs = {"query_cut": point["query_cut"], "heap_factor": point["heap_factor"]}

        def api(i: int) -> list[str]:
            return index.search_encoded(rows[i], k, mode="approx", **knobs)[0].ids

        api(0)
        lat = np.median(np.stack([time_queries(api, len(rows), clock)[0] for _ in range(2)]), axis=0) * 1e6
        out.append({"n_postings": npost, "target": target, **knobs, "thin_mean_us": point["mean_us"], "api_mean_us": float(lat.mean())})
    return out


def time_model(runs: list[dict]) -> dict[str, float]:
    """Least-squares fit of lsr's mean latency on its work counts: per-query overhead (us) plus
    ns per summary entry and per forward entry of a scored document. Splits time between
    summaries and document scoring at any point."""
    ours = [r for r in runs if r["system"] == "lsr"]
    if len(ours) < 3:
        return {}
    x = np.array([[1.0, r["work"]["summary_entries"], r["work"]["doc_entries"]] for r in ours])
    y = np.array([r["mean_us"] for r in ours])
    (c, a, b), *_ = np.linalg.lstsq(x, y, rcond=None)
    return {"overhead_us": float(c), "ns_per_summary_entry": float(a * 1e3), "ns_per_doc_entry": float(b * 1e3),
            "r2": float(1 - ((x @ [c, a, b] - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())}


def _cheapest(runs: list[dict], system: str, target: float, npost: int | None = None) -> dict | None:
    ok = [r for r in runs if r["system"] == system and r["recall"] >= target and (npost is None or r["n_postings"] == npost)]
    return min(ok, key=lambda r: r["mean_us"]) if ok else None


def _throughput(out: dict, index: Any, searcher: Any, queries: SparseVectors, s_terms: list, s_values: list, npost: int,
                k: int, threads: int, rounds: int = 5) -> None:
    """Queries/s of one batch on ``threads`` threads, each system at its cheapest point with recall >= 0.95.

    The systems alternate for ``rounds`` rounds, one timed batch each a round, and each keeps its
    best round, so that a change of machine speed hits both alike rather than one system's batches.
    Seismic's ``batch_search`` runs on its global thread pool (one thread per core) whatever
    ``num_threads`` says: its CPU time is 1.9x its wall time at num_threads=1 here."""
    import numba

    ids = np.array([str(i) for i in range(len(s_terms))], dtype=s_terms[0].dtype if s_terms else str)
    batches: dict[str, tuple[dict, Any]] = {}
    for system in ("lsr", "seismic"):
        point = _cheapest(out["runs"], system, 0.95, npost)
        if point is None:
            continue
        cut, hf = point["query_cut"], point["heap_factor"]
        if system == "lsr":
            run = lambda cut=cut, hf=hf: index.search_encoded(queries, k, mode="approx", query_cut=cut, heap_factor=hf, threads=threads)  # noqa: E731
        else:
            run = lambda cut=cut, hf=hf: searcher.batch_search(ids, s_terms, s_values, k, cut, hf, num_threads=threads)  # noqa: E731
        batches[system] = (point, run)
    seconds: dict[str, list[float]] = {system: [] for system in batches}
    numba.set_num_threads(threads)  # the rest of the benchmark runs on one
    for _ in range(rounds + 1):  # the first round warms up, untimed
        for system, (_, run) in batches.items():
            seconds[system].append(_timed(run))
    numba.set_num_threads(1)
    for system, (point, _) in batches.items():
        qps = [len(s_terms) / t for t in seconds[system][1:]]
        out.setdefault("throughput", []).append({"system": system, "n_postings": npost, "threads": threads, "query_cut": point["query_cut"],
                                                 "heap_factor": point["heap_factor"], "recall": point["recall"], "qps": max(qps),
                                                 "qps_rounds": qps})


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _tune_held_out(out: dict, index: Any, queries: SparseVectors, truth: list[list[str]], npost: int, k: int,
                   query_cuts: tuple[int, ...], heap_factors: tuple[float, ...]) -> None:
    """Auto-tune (over the benchmark's knob grid) on the even-numbered queries; measure recall on the odd ones."""
    even, odd = range(0, len(queries), 2), range(1, len(queries), 2)
    for target in TARGETS:
        point = index.tune(queries.take(even), target_recall=target, k=k, query_cuts=query_cuts, heap_factors=heap_factors)
        found = [r.ids for r in index.search_encoded(queries.take(odd), k, mode="approx")]
        out.setdefault("tuning", []).append({"n_postings": npost, "target": target, **point.knobs(), "tuned_recall": point.recall,
                                             "tuned_recall_se": point.recall_se, "reached": point.reached, "held_out_recall": recall(found, [truth[i] for i in odd], k)})


def ratios(runs: list[dict]) -> list[dict]:
    """Per target recall: each system's cheapest point over all builds and knobs, and ours / Seismic.

    ``interpolated`` also reads each system's mean latency at exactly the target off its
    frontier (the points no cheaper point out-recalls), linearly between the two frontier points
    around it: the grid's cheapest point can overshoot a target by a little for one system and a
    lot for the other, a step of the grid rather than a difference of the engines.
    """
    rows = []
    for target in TARGETS:
        ours, theirs = _cheapest(runs, "lsr", target), _cheapest(runs, "seismic", target)
        row: dict[str, Any] = {"target": target, "lsr": ours, "seismic": theirs}
        if ours and theirs:
            row["mean_ratio"] = ours["mean_us"] / theirs["mean_us"]
            row["p99_ratio"] = ours["p99_us"] / theirs["p99_us"]
            at = {name: _frontier_us(runs, name, target) for name in ("lsr", "seismic")}
            row["interpolated"] = {"lsr_us": at["lsr"], "seismic_us": at["seismic"], "ratio": at["lsr"] / at["seismic"]}
        rows.append(row)
    return rows


def _frontier_us(runs: list[dict], system: str, target: float) -> float:
    """Mean latency at recall ``target`` on the system's recall / latency frontier (linear between
    the frontier points around it; the cheapest point when that one reaches the target already)."""
    frontier: list[tuple[float, float]] = []  # (mean_us, recall), both ascending
    for r in sorted((r for r in runs if r["system"] == system), key=lambda r: r["mean_us"]):
        if not frontier or r["recall"] > frontier[-1][1]:
            frontier.append((r["mean_us"], r["recall"]))
    i = next(i for i, (_, rec) in enumerate(frontier) if rec >= target)
    if i == 0:
        return frontier[0][0]
    (us0, rec0), (us1, rec1) = frontier[i - 1], frontier[i]
    return us0 + (target - rec0) / (rec1 - rec0) * (us1 - us0)


def write_results(out: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"approx_{out['dataset']}"
    (out_dir / f"{stem}.json").write_text(json.dumps(out, indent=2))
    s = out["settings"]
    fmt = lambda r: f"{r['mean_us']:.0f} / {r['p99_us']:.0f} (n_postings {r['n_postings']}, cut {r['query_cut']}, hf {r['heap_factor']}, recall {r['recall']:.3f})" if r else "not reached"  # noqa: E731
    lines = [
        f"# Approximate search vs Seismic: {out['dataset']} ({out['docs']:,} docs, {out['queries']} queries, k={out['k']})",
        "",
        f"Machine: {out['machine'].get('cpu', 'unknown')}, {out['machine']['cores']} cores. "
        f"Vectors: {out['encoder']['model']} (encoder fingerprint {out['encoder']['fingerprint']}). "
        f"Same vectors (u8-quantized weights) and build settings for both; builds on {out['machine']['build_threads']} threads; one query at a time on one "
        "thread through each Python single-query call (lsr: `SparseIndex.approx_searcher(...).search`, rows mapped to ids; "
        f"Seismic: `SeismicIndex.search`); latency ({s['clock']} clock) is the per-query median of {s['repeats']} interleaved passes, then mean "
        "/ p99 over queries. Recall@k is against lsr's exhaustive top-k. Build settings: n_postings "
        f"{s['n_postings']} (Seismic's MS MARCO recommendation scaled to this corpus: {s['scaled_n_postings']}), "
        f"centroid_fraction {s['centroid_fraction']}, summary_energy {s['summary_energy']}, max_fraction {s['max_fraction']}.",
        "",
        "## Cheapest point reaching each recall (mean / p99 us)",
        "",
        "The last column reads each system's mean at exactly the target off its recall / latency frontier, linearly between "
        "the two frontier points around it (lsr us / Seismic us = ratio).",
        "",
        "| recall >= | lsr | Seismic | lsr / Seismic mean | lsr / Seismic p99 | at the target, interpolated |",
        "|---:|---|---|---:|---:|---|",
    ]
    for r in out["ratios"]:
        ratio = lambda key: f"{r[key]:.2f}" if key in r else ""  # noqa: E731
        i = r.get("interpolated")
        at = f"{i['lsr_us']:.0f} / {i['seismic_us']:.0f} = {i['ratio']:.2f}" if i else ""
        lines.append(f"| {r['target']:.2f} | {fmt(r['lsr'])} | {fmt(r['seismic'])} | {ratio('mean_ratio')} | {ratio('p99_ratio')} | {at} |")
    p = out.get("profile") or {}
    if p:
        lines += ["", "## Where lsr's time goes", "",
                  f"Fit of mean latency on work counts over all lsr runs (R^2 {p['r2']:.3f}): {p['overhead_us']:.0f} us per query "
                  f"fixed, {p['ns_per_summary_entry']:.2f} ns per summary entry read, {p['ns_per_doc_entry']:.2f} ns per forward "
                  "entry of a scored document.", "",
                  "| recall >= | n_postings | cut | hf | thin entry mean us | Retriever.search_encoded mean us | summary entries | docs scored | doc entries | "
                  "blocks scored | blocks skipped |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for kr in out.get("kernel", []):
            run = next(r for r in out["runs"] if r["system"] == "lsr" and r["n_postings"] == kr["n_postings"]
                       and r["query_cut"] == kr["query_cut"] and r["heap_factor"] == kr["heap_factor"])
            w = run["work"]
            lines.append(f"| {kr['target']:.2f} | {kr['n_postings']} | {kr['query_cut']} | {kr['heap_factor']} | {kr['thin_mean_us']:.0f} | "
                         f"{kr['api_mean_us']:.0f} | {w['summary_entries']:.0f} | {w['docs_scored']:.0f} | {w['doc_entries']:.0f} | "
                         f"{w['blocks_scored']:.1f} | {w['blocks_skipped']:.1f} |")
    lines += ["", "## Builds", "", f"Seconds, CPU seconds (all threads) and peak RSS are medians of {s['build_repeats']} builds per "
              f"system, the systems alternating, each the whole build process on {out['machine']['build_threads']} threads: lsr's "
              "also loads the vectors and builds the exact-search structures its index always holds (Numba kernels loaded from a "
              "warm cache, as once installed); Seismic's builds only the approximate index, from the same vectors written already "
              "dequantized, so that its process loads neither lsr's index nor Numba. Both run on every core: Seismic's build uses its "
              "global pool whatever its num_threads says, so CPU seconds are the figure to compare for one core.", "",
              "| system | n_postings | seconds | each build (s) | CPU seconds | peak RSS MB | bytes on disk | bytes approx search reads |",
              "|---|---:|---:|---|---:|---:|---:|---:|"]
    for b in out["builds"]:
        extra = f"{b['bytes_approx_search']:,} (approx part built in {b['approx_build_seconds']:.1f} s)" if b["system"] == "lsr" else ""
        each = " / ".join(f"{x:.1f}" for x in b["seconds_runs"])
        cpu = f"{b['cpu_seconds']:.1f}" if "cpu_seconds" in b else "-"
        lines.append(f"| {b['system']} | {b['n_postings']} | {b['seconds']:.1f} | {each} | {cpu} | {b['peak_rss_mb']:.0f} | {b['bytes']:,} | "
                     f"{extra} |")
    lines += ["", "## Batch throughput (one batch of all queries, cheapest point with recall >= 0.95)", "",
              "Each system's best of the rounds, the systems alternating; lsr through `Retriever.search_encoded`, Seismic through "
              "`batch_search`, which runs on its global pool of one thread per core whatever its num_threads says.", "",
              "| system | n_postings | threads | query_cut | heap_factor | recall | queries/s | each round |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for t in out.get("throughput", []):
        each = " / ".join(f"{x:.0f}" for x in t["qps_rounds"])
        lines.append(f"| {t['system']} | {t['n_postings']} | {t['threads']} | {t['query_cut']} | {t['heap_factor']} | {t['recall']:.3f} | "
                     f"{t['qps']:.0f} | {each} |")
    lines += ["", "## Auto-tuning (tuned on even-numbered queries, measured on odd-numbered ones)", "",
              "The tuner takes the cheapest knobs whose tuning recall is three standard errors above the target; where none is, "
              "it says so (reached: no) and keeps the most accurate.", "",
              "| n_postings | target | query_cut | heap_factor | recall (tuning) | standard error | reached | recall (held out) |",
              "|---:|---:|---:|---:|---:|---:|---|---:|"]
    for t in out.get("tuning", []):
        lines.append(f"| {t['n_postings']} | {t['target']:.2f} | {t['query_cut']} | {t['heap_factor']} | {t['tuned_recall']:.3f} | "
                     f"{t['tuned_recall_se']:.3f} | {'yes' if t['reached'] else 'no'} | {t['held_out_recall']:.3f} |")
    lines += ["", "## All runs", "", "| system | n_postings | query_cut | heap_factor | mean us | p50 us | p99 us | recall | "
              "lsr docs scored | lsr summary entries | lsr doc entries |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in out["runs"]:
        w = r.get("work")
        work = f"{w['docs_scored']:.0f} | {w['summary_entries']:.0f} | {w['doc_entries']:.0f}" if w else " | | "
        lines.append(f"| {r['system']} | {r['n_postings']} | {r['query_cut']} | {r['heap_factor']} | {r['mean_us']:.0f} | "
                     f"{r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['recall']:.4f} | {work} |")
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    _plot(out, out_dir / f"{stem}.png")


def _frontier(runs: list[dict], key: str) -> list[dict]:
    """Points no other point beats on both latency and recall, by latency."""
    best, front = -1.0, []
    for r in sorted(runs, key=lambda r: (r[key], -r["recall"])):
        if r["recall"] > best:
            front.append(r)
            best = r["recall"]
    return front


def _plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in ((axes[0], "mean_us", "mean"), (axes[1], "p99_us", "p99")):
        for system, color in (("lsr", "tab:blue"), ("seismic", "tab:orange")):
            runs = [r for r in out["runs"] if r["system"] == system]
            ax.scatter([r[key] for r in runs], [r["recall"] for r in runs], s=8, alpha=0.3, color=color)
            front = _frontier(runs, key)
            ax.plot([r[key] for r in front], [r["recall"] for r in front], marker="o", ms=3, color=color, label=f"{system} (best per recall)")
        for target in TARGETS:
            ax.axhline(target, color="grey", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel(f"{label} latency per query (us, log)")
        ax.set_ylabel(f"recall@{out['k']} vs exact")
        ax.set_title(f"{out['dataset']}: {out['docs']:,} docs, one thread")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
