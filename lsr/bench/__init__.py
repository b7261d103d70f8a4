"""Benchmarks: side-by-side measurements against the anchor engines, written under evaluation/results/."""

from __future__ import annotations

import functools
import inspect
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# The workloads of `lsr bench exact` (lsr.bench.exact), here so the CLI lists them without importing it.
EXACT_WORKLOADS = ("splade-real", "splade-synth", "splade-gcide", "bm25-gcide")


def scratch_work_dir(prefix: str) -> Callable[[F], F]:
    """Give a benchmark function that takes ``work_dir`` a temporary one, removed when it returns
    or fails, when the caller names none (a 1M-document run leaves 12 GB of indexes there); a
    ``work_dir`` the caller names is kept."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            bound = inspect.signature(fn).bind(*args, **kwargs)
            if bound.arguments.get("work_dir") is not None:
                return fn(*args, **kwargs)
            with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
                bound.arguments["work_dir"] = tmp
                return fn(*bound.args, **bound.kwargs)
        return run  # type: ignore[return-value]
    return wrap
