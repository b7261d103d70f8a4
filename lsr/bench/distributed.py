"""`lsr bench distributed`: what sharding on Ray costs per query, and encoding on Ray workers.

Scatter-gather overhead: the same pre-encoded queries (encoding is not timed) searched one at a
time on one thread by the unsharded collection (in this process) and by 1, 2 and 4 shards
(:class:`~lsr.distributed.ShardedRetriever`, one Ray actor per shard, all on this machine), in
exact and approx modes, top-k. The systems are interleaved query by query; each query's time is
the median of ``repeats`` passes; the overhead of a sharded system is, per query, its time minus
the unsharded time, and we report its p50 and p99 over queries. ``fan-out floor`` is a no-op
request to every shard actor (the round trip alone): over the direct transport ShardedRetriever
searches through (:mod:`lsr.distributed.wire`), by ordinary actor calls and, for comparison,
through a Ray compiled graph. Every sharded answer is checked equal to the
unsharded one in exact mode while it is timed.

Encoding: splade-tiny over the first ``encode_docs`` documents on 1 and 2 Ray workers (one CPU,
one torch thread each; actor start and model load timed apart), and in this process on 1 and on
all threads, for reference.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lsr.data import iter_corpus, load_queries, resolve_dataset, write_vectors_jsonl
from lsr.distributed import ShardedRetriever, build_sharded
from lsr.distributed.build import encode_on_ray
from lsr.distributed.cluster import connect
from lsr.pipeline import build_index
from lsr.util import machine_threads

DATASETS = ("scifact", "gcide")
SHARDS = (1, 2, 4)
MODES = ("exact", "approx")


def _source(dataset: str, tmp: Path, n_queries: int) -> tuple[dict[str, Any], list[Any]]:
    """Build options (vectors file or corpus + model) and the queries: SciFact as cached
    splade-tiny vectors, gcide (no SPLADE encoding cached: 126k entries take ~1 h to encode
    here) with BM25, queried with MS MARCO dev-small questions."""
    if dataset == "scifact":
        from lsr.bench.data import encoded_collection
        from lsr.encoders import load_encoder

        data = encoded_collection("scifact", load_encoder("splade-tiny"))
        write_vectors_jsonl(tmp / "vectors.jsonl", data.doc_ids, data.docs)
        return {"vectors": tmp / "vectors.jsonl", "model": None}, [data.queries.to_dict(i) for i in range(min(n_queries, len(data.queries)))]
    if dataset == "gcide":
        queries = load_queries(resolve_dataset("msmarco-passage") / "queries.dev-small.jsonl")[:n_queries]
        return {"corpus": resolve_dataset("gcide"), "model": "bm25"}, [q.text for q in queries]
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def _timed(run, n: int, repeats: int, names: list[str]) -> dict[str, np.ndarray]:
    """Per-query median seconds of each system over interleaved passes."""
    for name in names:
        run(name, 0)  # warm up
    t = {name: np.zeros((repeats, n)) for name in names}
    for r in range(repeats):
        for i in range(n):
            for name in names:
                t0 = time.perf_counter()
                run(name, i)
                t[name][r, i] = time.perf_counter() - t0
    return {name: np.median(v, axis=0) for name, v in t.items()}


def _stats(ms: np.ndarray) -> dict[str, float]:
    return {"mean_ms": float(ms.mean()), "p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99))}


def run_search_overhead(dataset: str, *, n_queries: int = 300, repeats: int = 3, k: int = 10,
                        shards: tuple[int, ...] = SHARDS) -> dict[str, Any]:
    connect("local")
    with tempfile.TemporaryDirectory(prefix="lsr-bench-dist-") as tmp:
        tmp = Path(tmp)
        options, queries = _source(dataset, tmp, n_queries)
        one, summary = build_index(tmp / "one", approx=True, show_progress_bar=False, **options)
        retrievers: dict[str, Any] = {"unsharded": one}
        for n in shards:
            build_sharded(tmp / f"s{n}", n, approx=True, show_progress_bar=False, **options)
            retrievers[f"{n} shard{'s' * (n > 1)}"] = ShardedRetriever(tmp / f"s{n}")
        encoded = {name: r.encode_queries(queries) for name, r in retrievers.items()}
        rows = {name: [e.take([i]) for i in range(len(queries))] for name, e in encoded.items()}
        out: dict[str, Any] = {"dataset": dataset, "docs": one.num_docs, "queries": len(queries), "k": k, "repeats": repeats,
                               "model": options["model"] or "splade-tiny (cached vectors)", "modes": {}}
        names = list(retrievers)
        for mode in MODES:
            mismatches = 0

            def run(name: str, i: int) -> None:
                nonlocal mismatches
                got = retrievers[name].search_encoded(rows[name][i], k, mode=mode, threads=1)[0]
                if mode == "exact" and name != "unsharded" and got.ids != last[i]:
                    mismatches += 1

            last = [r.ids for r in one.search_encoded(encoded["unsharded"], k, mode=mode, threads=1)]
            times = _timed(run, len(queries), repeats, names)
            base = times["unsharded"]
            out["modes"][mode] = {
                name: {**_stats(t * 1e3), **({} if name == "unsharded" else
                                              {"overhead_p50_ms": float(np.median((t - base) * 1e3)),
                                               "overhead_p99_ms": float(np.percentile((t - base) * 1e3, 99))})}
                for name, t in times.items()}
            out["modes"][mode]["exact_mismatches"] = mismatches
        out["fan_out_floor"] = {name: _floors(r, min(300, len(queries))) for name, r in retrievers.items() if name != "unsharded"}
        out["bytes_per_doc"] = {"unsharded": summary["bytes"] / one.num_docs}
        for name, r in retrievers.items():
            if name != "unsharded":
                info = r.info()
                out["bytes_per_doc"][name] = info["bytes"] / one.num_docs
                r.close()
    return out


class _Echo:
    """A no-op actor: the Ray round trip alone."""

    def echo(self, x: Any) -> Any:
        return x


def _floors(r: ShardedRetriever, n: int) -> dict[str, Any]:
    """The round trip alone: an empty search request to every shard actor over the direct
    transport (what ShardedRetriever searches through) and by ordinary actor calls, and, as many
    no-op actors, ordinary calls and a Ray compiled graph (shared-memory channels; experimental in
    Ray and not used by ShardedRetriever: measured for comparison)."""
    import ray
    from ray.dag import InputNode, MultiOutputNode

    out = {"direct transport (ShardServer)": _stats(_timed(lambda _n, _i: r._fan_out([], False), n, 3, ["x"])["x"] * 1e3),
           "actor calls (ShardServer)": _stats(_timed(lambda _n, _i: ray.get([a.search.remote([]) for a in r.actors]), n, 3, ["x"])["x"] * 1e3)}
    echoes = [ray.remote(num_cpus=0)(_Echo).remote() for _ in r.actors]
    try:
        out["actor calls (no-op actors)"] = _stats(_timed(lambda _n, _i: ray.get([a.echo.remote([]) for a in echoes]), n, 3, ["x"])["x"] * 1e3)
        with InputNode() as request:
            dag = MultiOutputNode([a.echo.bind(request) for a in echoes])
        compiled = dag.experimental_compile()
        try:
            out["compiled graph (no-op actors)"] = _stats(_timed(lambda _n, _i: ray.get(compiled.execute([])), n, 3, ["x"])["x"] * 1e3)
        finally:
            compiled.teardown()
    except Exception as e:  # noqa: BLE001 - an experimental API: report why it did not run
        out["compiled graph (no-op actors)"] = {"error": f"{type(e).__name__}: {str(e)[:120]}"}
    finally:
        for a in echoes:
            ray.kill(a)
    return out


def run_encode_throughput(dataset: str = "scifact", *, n_docs: int = 600, workers: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    import torch

    from lsr.encoders import load_encoder

    ray = connect("local")
    docs = [d.contents for _, d in zip(range(n_docs), iter_corpus(resolve_dataset(dataset)))]
    encoder = load_encoder("splade-tiny")
    out: dict[str, Any] = {"dataset": dataset, "docs": len(docs), "model": "splade-tiny", "runs": []}
    for threads in sorted({1, machine_threads()}):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        encoder.encode_documents(docs, show_progress_bar=False)
        s = time.perf_counter() - t0
        out["runs"].append({"system": f"in process, {threads} thread(s)", "encode_s": s, "docs_per_s": len(docs) / s})
    torch.set_num_threads(machine_threads())
    for n in workers:
        timings: dict[str, float] = {}
        encode_on_ray(ray, docs, "splade-tiny", encoder.settings(), encoder.vocab, n, show_progress_bar=False, timings=timings)
        out["runs"].append({"system": f"Ray, {n} worker(s) x 1 thread", "start_s": timings["start_s"], "encode_s": timings["encode_s"],
                            "docs_per_s": len(docs) / timings["encode_s"]})
    return out


def run_sizing(n_docs: int = 1_000_000, out_dir: str | os.PathLike = "evaluation/results/distributed") -> dict[str, Any]:
    """Bytes per document of one shard at ``n_docs`` synthetic documents grown from the real
    splade-tiny encodings (:mod:`lsr.bench.synth`), per part, with the default build (u16,
    block size 32) and with the approx structure: what the sizing plan (docs/sizing.md) divides
    a node's memory by."""
    from lsr.bench.data import real_data
    from lsr.bench.synth import synthesize
    from lsr.encoders import load_encoder
    from lsr.index import SparseIndex

    real = real_data(load_encoder("splade-tiny"))
    vectors = synthesize(real.docs, n_docs)
    ids = [f"s{i}" for i in range(n_docs)]
    out: dict[str, Any] = {"docs": n_docs, "nnz_per_doc": vectors.nnz / n_docs, "builds": {}}
    with tempfile.TemporaryDirectory(prefix="lsr-sizing-") as tmp:
        for name, approx in (("exact", False), ("exact+approx", True)):
            t0 = time.perf_counter()
            index = SparseIndex.build(vectors, ids, approx=approx)
            build_s = time.perf_counter() - t0
            path = index.save(Path(tmp) / name)
            files = {f.name: f.stat().st_size for f in sorted(path.iterdir()) if f.is_file()}
            out["builds"][name] = {"build_s": build_s, "bytes": sum(files.values()), "bytes_per_doc": sum(files.values()) / n_docs,
                                   "files_bytes_per_doc": {k: v / n_docs for k, v in files.items()}}
            del index
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sizing.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# Bytes per document at {n_docs:,} synthetic splade-tiny documents ({out['nnz_per_doc']:.0f} terms each)", "",
             "| build | build s | bytes | bytes / doc |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {b['build_s']:.1f} | {b['bytes']:,} | {b['bytes_per_doc']:,.0f} |" for n, b in out["builds"].items()]
    lines += ["", "| file (exact+approx) | bytes / doc |", "|---|---:|"]
    lines += [f"| {f} | {v:,.1f} |" for f, v in out["builds"]["exact+approx"]["files_bytes_per_doc"].items()]
    (out_dir / "sizing.md").write_text("\n".join(lines) + "\n")
    return out


def run_distributed_benchmark(datasets: tuple[str, ...] = DATASETS, *, n_queries: int = 300, repeats: int = 3, k: int = 10,
                              encode_docs: int = 600, out_dir: str | os.PathLike = "evaluation/results/distributed") -> dict[str, Any]:
    from lsr.evaluation.common import git_commit

    out = {"datasets": list(datasets), "machine": {"cpus": machine_threads(), "platform": platform.platform(), "python": platform.python_version()},
           "commit": git_commit(), "search": [run_search_overhead(d, n_queries=n_queries, repeats=repeats, k=k) for d in datasets],
           "encode": run_encode_throughput(n_docs=encode_docs) if encode_docs else None}
    write_results(out, Path(out_dir))
    return out


def write_results(out: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "distributed_" + "_".join(out["datasets"])
    (out_dir / f"{stem}.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# Sharded search on Ray: scatter-gather overhead, and encoding on Ray workers", "",
             f"One machine ({out['machine']['cpus']} CPUs, shared), commit {out['commit']}. Queries pre-encoded, one at a time on "
             "one thread per shard; systems interleaved per query; each query's time is the median of the passes. Overhead = "
             "sharded time minus unsharded time, per query; p50 / p99 over queries. Fan-out floor: an empty request to every shard "
             "actor (over the direct transport ShardedRetriever searches through, by ordinary Ray actor calls, and through a Ray "
             "compiled graph for comparison). Exact-mode answers are checked equal to the unsharded ones while timed.", ""]
    for s in out["search"]:
        lines += [f"## {s['dataset']}: {s['docs']:,} documents, {s['queries']} queries, top-{s['k']} ({s['model']})", "",
                  "| mode | system | mean ms | p50 ms | p99 ms | overhead p50 ms | overhead p99 ms |", "|---|---|---:|---:|---:|---:|---:|"]
        for mode, systems in s["modes"].items():
            for name, v in systems.items():
                if name == "exact_mismatches":
                    continue
                over = (f"{v['overhead_p50_ms']:.3f} | {v['overhead_p99_ms']:.3f}" if "overhead_p50_ms" in v else "- | -")
                lines.append(f"| {mode} | {name} | {v['mean_ms']:.3f} | {v['p50_ms']:.3f} | {v['p99_ms']:.3f} | {over} |")
        lines += ["", f"Exact answers differing from the unsharded ones: {s['modes']['exact']['exact_mismatches']}.", "",
                  "| fan-out floor (an empty request to every shard) | transport | p50 ms | p99 ms |", "|---|---|---:|---:|"]
        lines += [f"| {name} | {how} | " + (f"{v['p50_ms']:.3f} | {v['p99_ms']:.3f} |" if "p50_ms" in v else f"{v['error']} | |")
                  for name, floors in s["fan_out_floor"].items() for how, v in floors.items()]
        lines += ["", "| layout | bytes per document |", "|---|---:|"]
        lines += [f"| {name} | {v:,.0f} |" for name, v in s["bytes_per_doc"].items()]
        lines.append("")
    if out["encode"]:
        e = out["encode"]
        lines += [f"## Encoding: {e['model']}, first {e['docs']} {e['dataset']} documents", "",
                  "| system | actor start + model load s | encode s | docs/s |", "|---|---:|---:|---:|"]
        lines += [f"| {r['system']} | {r.get('start_s', float('nan')):.2f} | {r['encode_s']:.2f} | {r['docs_per_s']:.1f} |" for r in e["runs"]]
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    _plot(out, out_dir / f"{stem}.png")


def _plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(out["search"]), figsize=(6 * len(out["search"]), 4), squeeze=False)
    for ax, s in zip(axes[0], out["search"]):
        for j, mode in enumerate(MODES):
            systems = {n: v for n, v in s["modes"][mode].items() if n != "exact_mismatches"}
            x = np.arange(len(systems))
            ax.bar(x + (j - 0.5) * 0.38, [v["p50_ms"] for v in systems.values()], 0.38, label=f"{mode} p50")
            ax.set_xticks(x, list(systems))
        ax.set_ylabel("latency per query, ms")
        ax.set_title(f"{s['dataset']} ({s['docs']:,} docs), top-{s['k']}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
