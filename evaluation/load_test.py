"""Bounded load test of the HTTP API (``lsr serve``) on this machine.

Two phases over the same text queries:

1. overhead: queries one at a time, each searched in-process (``Retriever.search``) and over
   HTTP (``POST /search``) in random order, so that both see the same machine load; the
   difference of the two p50 latencies is the cost of the HTTP layer;
2. load: N requests at concurrency C; p50/p90/p99/mean latency, throughput and errors.

The target must be a loopback address: this is a benchmark of a local server, not a tool to
load someone else's. With ``--workers`` the script starts the server itself on a free port
and stops it at the end. Every request has a timeout and the whole run a deadline, so it
always stops by itself. Results go to ``<out>/<label>.json`` and ``.md``, and
``<out>/README.md`` is regenerated to compare every run in ``<out>``.

    python evaluation/load_test.py --index /tmp/scifact_idx --queries scifact --workers 2
"""

import argparse
import asyncio
import ipaddress
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import torch

from lsr.data import load_queries, resolve_dataset
from lsr.retrieval import Retriever
from lsr.service import Limits

RESULTS = Path(__file__).resolve().parent / "results" / "service"
STARTUP_TIMEOUT_S = 300


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: str, workers: int, log: Path, extra: list[str] = ()) -> tuple[subprocess.Popen, str]:
    """A server on a free loopback port, in its own process group; returns once /health is 200."""
    port = free_port()
    cmd = [sys.executable, "-m", "lsr.cli", "serve", "--index", index, "--port", str(port),
           "--workers", str(workers), "--no-access-log", "--log-level", "warning", *extra]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"server not healthy after {STARTUP_TIMEOUT_S} s; see {log}")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (uvicorn stops its workers), then SIGKILL to the group this script created."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p90": round(float(np.percentile(ms, 90)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "mean": round(float(ms.mean()), 3),
        "max": round(float(ms.max()), 3),
    }


def measure_overhead(index: Retriever, url: str, queries: list[str], k: int, timeout: float) -> dict:
    """In-process and HTTP latency of the same queries, one request at a time.

    Each query runs both ways, in random order, so that drifts in machine load hit both
    alike. The server's own ``took_ms`` splits the HTTP latency into the handler (search plus
    the hop to a worker thread) and the rest (HTTP, JSON, validation, scheduling).
    """
    rng = np.random.default_rng(0)
    inproc, http, took = [], [], []
    with httpx.Client(base_url=url, timeout=timeout) as client:
        for q in queries:
            for in_process in rng.permutation([True, False]):
                start = time.perf_counter()
                if in_process:
                    expected = index.search(q, k)
                    inproc.append(time.perf_counter() - start)
                else:
                    r = client.post("/search", json={"query": q, "k": k})
                    http.append(time.perf_counter() - start)
                    r.raise_for_status()
                    took.append(r.json()["took_ms"] / 1e3)
            if r.json()["ids"] != expected.ids:
                raise RuntimeError(f"server and in-process results differ for {q!r}")
    http_a, inproc_a, took_a = np.asarray(http), np.asarray(inproc), np.asarray(took)
    return {
        "queries": len(queries),
        "inprocess_ms": summary_ms(inproc),
        "http_ms": summary_ms(http),
        "server_took_ms": summary_ms(took),
        "overhead_p50_ms": round(float(np.percentile(http_a, 50) - np.percentile(inproc_a, 50)) * 1e3, 3),
        "paired_overhead_median_ms": round(float(np.median(http_a - inproc_a)) * 1e3, 3),
        "outside_handler_median_ms": round(float(np.median(http_a - took_a)) * 1e3, 3),
    }


async def run_load(url: str, queries: list[str], k: int, n: int, concurrency: int, timeout: float) -> dict:
    """``n`` requests from ``concurrency`` concurrent clients, cycling through ``queries``."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    next_request = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        for i in next_request:
            start = time.perf_counter()
            try:
                r = await client.post("/search", json={"query": queries[i % len(queries)], "k": k})
                if r.status_code != 200:
                    errors[f"http {r.status_code}"] += 1
            except httpx.HTTPError as e:
                errors[type(e).__name__] += 1
            latencies.append(time.perf_counter() - start)

    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {
        "requests": n,
        "concurrency": concurrency,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "wall_s": round(wall, 3),
        "throughput_rps": round(n / wall, 1),
        "latency_ms": summary_ms(latencies),
    }


def write_markdown(result: dict, path: Path) -> None:
    o, lo = result["overhead"], result["load"]
    lines = [
        f"# Load test: {result['label']}",
        "",
        f"- server: {result['config']['url']} ({result['config']['workers'] or '?'} worker(s)), index `{result['config']['index']}` "
        f"({result['index']['num_docs']} docs, model {result['index']['model']}), k={result['config']['k']}, "
        f"{result['config']['num_queries']} distinct text queries from `{result['config']['queries_from']}`",
        f"- machine: {result['machine']['cpus']} CPUs, load average {result['machine']['loadavg_before']} before and "
        f"{result['machine']['loadavg_after']} after (other jobs share these cores; the client runs on them too)",
        "",
        f"## HTTP overhead (one request at a time, {o['queries']} queries)",
        "",
        "| | p50 ms | p99 ms | mean ms |",
        "|---|---:|---:|---:|",
        f"| in-process `Retriever.search` | {o['inprocess_ms']['p50']} | {o['inprocess_ms']['p99']} | {o['inprocess_ms']['mean']} |",
        f"| `POST /search` | {o['http_ms']['p50']} | {o['http_ms']['p99']} | {o['http_ms']['mean']} |",
        f"| of which in the handler (`took_ms`) | {o['server_took_ms']['p50']} | {o['server_took_ms']['p99']} | {o['server_took_ms']['mean']} |",
        "",
        f"Overhead: p50 difference {o['overhead_p50_ms']} ms; median of paired differences {o['paired_overhead_median_ms']} ms; "
        f"median time outside the handler (HTTP, JSON, validation, scheduling) {o['outside_handler_median_ms']} ms.",
        "",
        f"## Load ({lo['requests']} requests, concurrency {lo['concurrency']})",
        "",
        "| errors | throughput req/s | p50 ms | p90 ms | p99 ms | mean ms | max ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {lo['errors']} | {lo['throughput_rps']} | {lo['latency_ms']['p50']} | {lo['latency_ms']['p90']} | "
        f"{lo['latency_ms']['p99']} | {lo['latency_ms']['mean']} | {lo['latency_ms']['max']} |",
        "",
    ]
    path.write_text("\n".join(lines))


def write_index(out: Path) -> None:
    """``README.md`` comparing every run whose JSON is in ``out``."""
    rows = []
    for f in sorted(out.glob("*.json")):
        r = json.loads(f.read_text())
        o, lo = r["overhead"], r["load"]
        rows.append(
            f"| [{r['label']}]({f.stem}.md) | {r['config']['workers'] or '?'} | {lo['requests']} | {lo['concurrency']} | {lo['errors']} | "
            f"{lo['throughput_rps']} | {lo['latency_ms']['p50']} | {lo['latency_ms']['p99']} | "
            f"{o['inprocess_ms']['p50']} | {o['http_ms']['p50']} | {o['overhead_p50_ms']} | {o['outside_handler_median_ms']} | "
            f"{r['machine']['loadavg_before'][0]} |"
        )
    (out / "README.md").write_text("\n".join([
        "# HTTP API load tests",
        "",
        "Written by `evaluation/load_test.py`; latencies in ms. *Overhead* is the p50 of `POST /search`",
        "minus the p50 of in-process `Retriever.search` for the same queries, one request at a time;",
        "*outside handler* is the median of each request's latency minus the server's own `took_ms`.",
        "The client runs on the same cores as the server, and other jobs may be running too",
        "(*load* is the 1-minute load average when the run started): figures are as measured.",
        "",
        "| run | workers | requests | concurrency | errors | req/s | p50 | p99 | in-process p50 | HTTP p50 | overhead | outside handler | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True, help="index directory: served (with --workers) and searched in-process")
    p.add_argument("--queries", default="scifact", help="collection whose queries are sent (name or folder; default: %(default)s)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--workers", type=int, default=1, help="start a server with this many workers (default: %(default)s)")
    target.add_argument("--url", help="use a running server instead (loopback only), e.g. http://127.0.0.1:8000")
    p.add_argument("-n", "--requests", type=int, default=5000)
    p.add_argument("-c", "--concurrency", type=int, default=32)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--overhead-queries", type=int, default=300, help="queries for the one-at-a-time overhead phase")
    p.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    p.add_argument("--deadline", type=float, default=1800.0, help="whole load phase, seconds")
    p.add_argument("--label", help="result file name (default: workers<N> or the URL's port)")
    p.add_argument("--serve-arg", action="append", default=[], help="passed to `lsr serve` (repeat), e.g. --serve-arg=--batch-wait-ms=0")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    if args.url and not (urlsplit(args.url).scheme == "http" and is_loopback(urlsplit(args.url).hostname or "")):
        p.error(f"refusing {args.url}: the target must be http:// on a loopback address (127.0.0.1, ::1, localhost)")
    if min(args.requests, args.concurrency, args.k, args.overhead_queries) < 1:
        p.error("--requests, --concurrency, -k and --overhead-queries must be >= 1")
    workers = None if args.url else args.workers
    label = args.label or (f"workers{workers}" if workers else f"port{urlsplit(args.url).port}")
    args.out.mkdir(parents=True, exist_ok=True)

    source = resolve_dataset(args.queries)
    queries = [q.text for q in load_queries(source)]
    index = Retriever.load(args.index)
    index.search(queries[0], args.k)  # load the model and the kernels before timing
    torch.set_num_threads(Limits().encoder_threads)  # encode in-process as the server does

    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    server_log = Path(tempfile.gettempdir()) / f"lsr-load-test-{label}.server.log"
    proc, url = start_server(args.index, workers, server_log, args.serve_arg) if workers else (None, args.url.rstrip("/"))
    try:
        for q in queries[:50]:  # warm the server's threads and caches
            httpx.post(f"{url}/search", json={"query": q, "k": args.k}, timeout=args.timeout).raise_for_status()
        print(f"overhead phase: {args.overhead_queries} queries one at a time against {url}", file=sys.stderr)
        overhead = measure_overhead(index, url, queries[: args.overhead_queries], args.k, args.timeout)
        print(f"load phase: {args.requests} requests at concurrency {args.concurrency}", file=sys.stderr)
        load = asyncio.run(asyncio.wait_for(
            run_load(url, queries, args.k, args.requests, args.concurrency, args.timeout), args.deadline
        ))
        server_stats = httpx.get(f"{url}/stats", timeout=args.timeout).json()
    finally:
        if proc is not None:
            stop_server(proc)

    result = {
        "label": label,
        "config": {
            "url": url, "workers": workers, "index": args.index, "queries_from": str(source), "num_queries": len(queries),
            "k": args.k, "timeout_s": args.timeout,
        },
        "index": {key: index.info()[key] for key in ("num_docs", "model", "num_postings")},
        "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "loadavg_before": loadavg_before, "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "overhead": overhead,
        "load": load,
        "server_stats": {key: server_stats[key] for key in ("endpoints", "service")},
    }
    (args.out / f"{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.out / f"{label}.md")
    write_index(args.out)
    print(json.dumps({"label": label, "overhead": overhead, "load": load}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
