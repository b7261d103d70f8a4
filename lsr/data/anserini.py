"""Anserini's JsonVectorCollection: what pyserini and Anserini index as impacts.

One ``{"id", "contents", "vector": {term: int}}`` line per document. Anserini's impact
indexing stores each weight as a term frequency, so the weights must be integers: they are
``round(weight * scale)`` (round half to even; Anserini's own SPLADE encodings use scale 100),
and a positive weight that would round to 0 is written as 1, so no posting is lost (the rule of
lsr's own impacts). Reading is :func:`lsr.data.vectors.read_vector_records` (a file or a
folder; ``lsr index --vectors`` takes either, keeping ``contents`` as the stored text).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lsr.data.vectors import SparseVectors

DEFAULT_SCALE = 100


def integer_weights(values: np.ndarray, scale: float) -> np.ndarray:
    """Weights as Anserini's integer impacts (see the module docstring)."""
    w = np.asarray(values, dtype=np.float64)
    return np.where(w > 0, np.maximum(np.rint(w * scale), 1), 0).astype(np.int64)


def write_json_vectors(path: str | Path, ids: Sequence[str], vectors: SparseVectors, contents: Sequence[str] | None = None,
                       *, scale: float = DEFAULT_SCALE) -> int:
    """Write a JsonVectorCollection file (heaviest terms first); returns the postings written.
    ``contents`` (the documents' texts) are stored by Anserini and shown with hits."""
    if len(ids) != len(vectors) or (contents is not None and len(contents) != len(ids)):
        raise ValueError(f"{len(ids)} ids, {len(vectors)} vectors, {len(contents) if contents is not None else '-'} texts")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    impacts = integer_weights(vectors.values, scale)
    vocab = vectors.vocab
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        for i, doc_id in enumerate(ids):
            lo, hi = int(vectors.indptr[i]), int(vectors.indptr[i + 1])
            order = lo + np.argsort(-impacts[lo:hi], kind="stable")
            vec = {vocab[vectors.indices[j]]: int(impacts[j]) for j in order if impacts[j] > 0}
            written += len(vec)
            line = {"id": doc_id, "contents": contents[i] if contents is not None else "", "vector": vec}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return written
