"""What every evaluated system shares: cache names and keys, paths in reports, latency timing.

Both systems, ours (:mod:`lsr.evaluation.harness`) and pyserini's
(:mod:`lsr.evaluation.pyserini_ref`), build on these, so neither borrows the other's helpers.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsr.data import Collection
from lsr.errors import DataError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LATENCY_SAMPLE = 2000  # queries timed one by one for the latency percentiles


def safe_name(name: str) -> str:
    """A name usable as one path component."""
    return str(name).replace("/", "__").replace(os.sep, "__")


def build_key(kind: str, model: str | None, params: dict[str, Any], collection: Collection) -> dict[str, Any]:
    """What a cached index was built from: a different key means it must be rebuilt."""
    corpus = collection.corpus
    return {"kind": kind, "model": model, "params": params, "corpus": str(corpus), "bytes": corpus.stat().st_size}


def need_corpus(system: str, collection: Collection) -> Path:
    if collection.corpus is None:
        raise DataError(
            f"collection {collection.name!r} has no corpus.jsonl (in {collection.root}); system {system!r} "
            "must build an index from it: give a prebuilt index instead (--index)"
        )
    return collection.corpus


def relative(path: Path | str) -> str:
    """A path relative to the project (or to ../shared/data) when it is under one, else as is."""
    p = Path(path).resolve()
    for base, prefix in ((PROJECT_ROOT, ""), (PROJECT_ROOT.parent / "shared", "../shared/")):
        try:
            return prefix + str(p.relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


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


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
