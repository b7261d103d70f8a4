"""Benchmark plumbing that tests can check without running a benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsr.bench import scratch_work_dir


def test_a_benchmark_without_a_work_dir_gets_a_scratch_one_that_is_removed_even_on_failure(tmp_path):
    seen = []

    @scratch_work_dir("lsr-test-scratch-")
    def bench(n: int, scale: int = 2, *, work_dir: str | None = None, fail: bool = False) -> int:
        seen.append(work_dir)
        (Path(work_dir) / "index.bin").write_text("built")
        if fail:
            raise RuntimeError("the benchmark failed")
        return n * scale

    assert bench(3) == 6
    assert seen[-1] is not None and "lsr-test-scratch-" in seen[-1]
    with pytest.raises(RuntimeError, match="failed"):
        bench(3, fail=True)
    named = tmp_path / "mine"
    named.mkdir()
    assert bench(3, 4, work_dir=str(named)) == 12
    assert seen[-1] == str(named) and (named / "index.bin").exists()  # a named one is kept
    assert not any(Path(scratch).exists() for scratch in seen[:2])
