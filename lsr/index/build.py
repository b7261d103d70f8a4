"""From document vectors to postings: transposition and impact quantization."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lsr.data.vectors import SparseVectors

QUANTIZATIONS = {"u8": np.uint8, "u16": np.uint16}
# A positive weight below half an impact unit is stored as 1 unit, never dropped: a posting
# lost to rounding is a document no query finds. Their count is reported (raised_postings);
# past RAISED_WARN of the weights the step is too coarse for the data (typically one outlier
# weight sets it) and the build summary says to use u16.
RAISED_WARN = 0.01

def quantization_scale(max_weight: float, dtype: np.dtype) -> float:
    """Weight of one impact unit: the largest weight maps to the dtype's maximum, so none overflows."""
    qmax = np.iinfo(dtype).max
    return float(max_weight) / qmax if max_weight > 0 else 1.0


def quantize(weights: np.ndarray, scale: float, dtype: np.dtype) -> np.ndarray:
    """Round weights to the nearest impact unit, never above the dtype's maximum and, for a
    positive weight, never below 1 (see RAISED_WARN)."""
    qmax = np.iinfo(dtype).max
    w = weights.astype(np.float64)
    return np.where(w > 0, np.clip(np.rint(w / scale), 1, qmax), 0).astype(dtype)


@dataclass(frozen=True)
class Postings:
    """Term -> (doc ids ascending, quantized impacts, float weights), as CSR over the vocabulary.

    Impacts are what pruning reads (bounds, approximate scores); the float weights are what
    exhaustive search adds up, so that its scores are the exact float ones without a rescoring.
    """

    indptr: np.ndarray  # int64, vocab_size + 1
    docs: np.ndarray  # int32
    impacts: np.ndarray  # uint8 | uint16
    weights: np.ndarray  # float32
    scale: float
    max_error: float  # largest |weight - impact * scale| over all postings
    raised: int  # positive weights below half a unit, stored as 1 unit


def build_postings(vectors: SparseVectors, vocab_size: int, quantization: str = "u16",
                   max_weight: float | None = None) -> Postings:
    """``max_weight`` (default: the vectors' largest) is the weight mapped to the largest impact:
    the shards of one sharded index share it, so that they score as one index would."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {sorted(QUANTIZATIONS)}, got {quantization!r}")
    dtype = QUANTIZATIONS[quantization]
    n_docs = len(vectors)
    largest = float(vectors.values.max()) if vectors.nnz else 0.0
    if max_weight is not None and not max_weight >= largest:
        raise ValueError(f"max_weight {max_weight!r} is below the largest document weight {largest}")
    scale = quantization_scale(largest if max_weight is None else max_weight, dtype)
    q = quantize(vectors.values, scale, dtype)
    raised = int(np.count_nonzero((vectors.values > 0) & (vectors.values < scale / 2)))
    max_error = float(np.abs(vectors.values.astype(np.float64) - q * scale).max()) if vectors.nnz else 0.0
    indptr, docs, entries = transpose(vectors.indptr, vectors.indices, vectors.values, vocab_size)
    return Postings(indptr=indptr, docs=docs, impacts=q[entries], weights=vectors.values[entries].astype(np.float32),
                    scale=scale, max_error=max_error, raised=raised)


def posting_weights(indptr: np.ndarray, terms: np.ndarray, weights: np.ndarray, vocab_size: int) -> np.ndarray:
    """The float weight of each posting, in posting order, from the forward rows."""
    return np.asarray(weights)[transpose(indptr, terms, weights, vocab_size)[2]].astype(np.float32)


def transpose(indptr: np.ndarray, terms: np.ndarray, weights: np.ndarray, vocab_size: int) -> tuple[np.ndarray, ...]:
    """Postings of forward rows: (indptr over terms, docs ascending within a term, and the
    forward entry each posting comes from), zero weights left out (no posting scores them)."""
    n_docs = indptr.shape[0] - 1
    # entry numbers from 1: scipy drops explicit zeros, and a zero weight's entry is made 0 to go
    entry = np.where(np.asarray(weights) > 0, np.arange(1, terms.shape[0] + 1, dtype=np.int64), 0)
    by_doc = sp.csr_matrix((entry, np.asarray(terms).copy(), np.asarray(indptr).copy()), shape=(n_docs, vocab_size))
    by_doc.eliminate_zeros()
    by_term = by_doc.tocsc()
    by_term.sort_indices()
    return by_term.indptr.astype(np.int64), by_term.indices.astype(np.int32), by_term.data - 1


def raised_warning(stats: dict, quantization: str) -> str | None:
    """The build summary's warning when many weights were raised to one impact step."""
    raised, total = stats.get("raised_postings", 0), max(1, stats.get("num_postings", 0))
    if raised <= RAISED_WARN * total:
        return None
    return (f"{raised:,} of {total:,} weights ({raised / total:.1%}) were below half a {quantization} impact step and are "
            f"stored as one step (kept, but coarsened): the largest weight sets the step; --quantization u16 is 256x finer")
