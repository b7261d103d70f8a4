"""Indexes for the service tests, built once per test process whichever module asks first.

The tiny index is built from hand-written vectors (no model: text queries are an error) and
saved by SparseIndex.save (a format-1 index directory, which the service still serves); the
ADI index is encoded with splade-tiny from ../shared/data/adi, for text queries, and written
by the build pipeline as a one-segment collection (what `lsr index` writes).
"""

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest

from lsr.data import SparseVectors
from lsr.index import SparseIndex

ADI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "adi"

TINY_DOCS = {
    "d1": {"apple": 1.0, "pie": 0.5},
    "d2": {"apple": 0.25, "tart": 2.0},
    "d3": {"banana": 1.5, "pie": 0.75},
    "d4": {"cherry": 0.4},
}


_WORKDIR = Path(tempfile.mkdtemp(prefix="lsr-service-tests-"))
atexit.register(shutil.rmtree, _WORKDIR, ignore_errors=True)
ADI_INDEX = _WORKDIR / "adi"
"""Where :func:`adi_index_dir` builds the ADI index, for apps created before it exists."""


@functools.cache
def tiny_index_dir() -> Path:
    vectors = SparseVectors.from_dicts(list(TINY_DOCS.values()))
    return SparseIndex.build(vectors, list(TINY_DOCS)).save(_WORKDIR / "tiny")


@functools.cache
def adi_index_dir() -> Path:
    if not (ADI / "corpus.jsonl").is_file():
        pytest.skip(f"ADI collection not found at {ADI} (../shared/data/adi relative to the repo root)")
    from lsr.pipeline import build_index

    # With a dense part and the approx structure, so that every mode the schema offers can serve requests.
    retriever, _ = build_index(ADI_INDEX, corpus=ADI, model="splade-tiny", show_progress_bar=False, dense_model="all-MiniLM-L6-v2", approx=True)
    assert retriever.collection is not None and retriever.path == ADI_INDEX
    return retriever.path
