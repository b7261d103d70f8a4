"""Small helpers shared by every layer: file hashing and sizes, core counts and CPU name, CSR offsets,
work on threads."""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def dir_bytes(path: str | os.PathLike) -> int:
    """Bytes of the files below ``path`` (or of ``path`` itself when it is a file)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def machine_threads() -> int:
    """Cores this process may run on (honours CPU affinity, unlike os.cpu_count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


T = TypeVar("T")
R = TypeVar("R")


def thread_map(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, on up to ``threads`` threads (default: every core), in order.

    For work that releases the GIL (nogil kernels, file writes, hashing); items are taken as
    threads free up, so give the largest first. The first error is raised once all have run.
    """
    items = list(items)
    threads = min(threads or machine_threads(), len(items))
    if threads <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))


def cpu_name() -> str:
    """The processor's model name: benchmark figures are only comparable on the same one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def offsets(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """CSR offsets (int64, ``len(counts) + 1``) of rows with the given lengths."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def concat(parts: Sequence[np.ndarray], dtype: type) -> np.ndarray:
    """Arrays joined end to end as ``dtype`` (an empty array of it when there are none)."""
    return np.concatenate(parts).astype(dtype, copy=False) if len(parts) else np.zeros(0, dtype)


def cache_dir(kind: str) -> Path:
    """``$LSR_CACHE/<kind>`` (default ``~/.cache/lsr/<kind>``): encodings reused across runs."""
    return Path(os.environ.get("LSR_CACHE", Path.home() / ".cache" / "lsr")) / kind
