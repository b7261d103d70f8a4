"""No byte pattern in an index file crashes the process (issue 13): tests/index_fuzzer.py damages
files of a small index (all parts: postings, forward index, block-max, approx) hundreds of times
and loads and searches each, with Numba's bounds checks compiled in, so a kernel read out of
bounds is an IndexError there rather than a segfault or a silently wrong ranking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.index import SparseIndex
from lsr.index.approx import ApproxSettings
from lsr.retrieval.collection import Collection

CASES = int(os.environ.get("LSR_FUZZ_CASES", "1000"))


def small_index(path: Path) -> Path:
    rng = np.random.default_rng(13)
    vocab = [f"t{i}" for i in range(300)]
    rows = [{vocab[t]: float(rng.gamma(0.8)) for t in rng.choice(300, rng.integers(0, 40), replace=False)} for _ in range(500)]
    rows[7] = {vocab[3]: 250.0}  # an outlier weight: u8 rounding raises the small ones (never drops them)
    index = SparseIndex.build(SparseVectors.from_dicts(rows, vocab), [f"d{i}" for i in range(500)], quantization="u8",
                              block_size=8, reorder="dominant", approx=ApproxSettings(n_postings=20, centroid_fraction=0.3))
    return index.save(path)


def small_collection(path: Path) -> Path:
    """Three segments (u8, approx), deletions in two of them: bitmaps, settings and vocabularies to damage."""
    rng = np.random.default_rng(17)
    vocab = [f"t{i}" for i in range(120)]
    collection = Collection.create(path, model=None, quantization="u8", block_size=8,
                                   approx=ApproxSettings(n_postings=10, centroid_fraction=0.3))
    for batch in range(3):
        collection.add([{"id": f"b{batch}-{i}", "vector": {vocab[t]: float(rng.gamma(0.8)) for t in rng.choice(120, rng.integers(1, 25), replace=False)}}
                        for i in range(60)])
        collection.commit(merge=False)
    collection.delete([f"b{b}-{i}" for b in (0, 2) for i in range(0, 60, 7)])
    collection.commit(merge=False)
    collection.close()
    return path


def fuzz(path: Path, tmp_path: Path, cases: int, *kind: str) -> dict:
    log = tmp_path / "cases.log"
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path.parent / "numba-boundscheck")}
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("index_fuzzer.py")), str(path), str(cases), "2024", str(log), *kind],
                          env=env, capture_output=True, text=True, timeout=1500)
    last = log.read_text().splitlines()[-1:] if log.exists() else []
    assert proc.returncode == 0, f"the fuzzer died ({proc.returncode}) at {last}: {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not report["failures"], json.dumps(report["failures"], indent=1)
    return report


def test_damaged_index_files_never_crash_loading_or_search(tmp_path):
    report = fuzz(small_index(tmp_path / "index"), tmp_path, CASES)
    assert report["cases"] == CASES >= 500
    # damage was both refused and (where only checksums see it) searched: both paths were exercised
    assert report["outcomes"].get("refused", 0) > 50 and report["outcomes"].get("searched", 0) > 50, report


def test_damaged_collection_files_never_crash_opening_or_search(tmp_path):
    """The same for a collection: segment files, deletion bitmaps, collection.json, vocab.json."""
    report = fuzz(small_collection(tmp_path / "collection"), tmp_path, CASES // 4, "collection")
    assert report["outcomes"].get("refused", 0) > 15 and report["outcomes"].get("searched", 0) > 15, report
