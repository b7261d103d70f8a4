"""From document vectors to postings: transposition and impact quantization."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lsr.data.vectors import SparseVectors

QUANTIZATIONS = {"u8": np.uint8, "u16": np.uint16}


def quantization_scale(max_weight: float, dtype: np.dtype) -> float:
    """Weight of one impact unit: the largest weight maps to the dtype's maximum, so none overflows."""
    qmax = np.iinfo(dtype).max
    return float(max_weight) / qmax if max_weight > 0 else 1.0


def quantize(weights: np.ndarray, scale: float, dtype: np.dtype) -> np.ndarray:
    """Round weights to the nearest impact unit (never above the dtype's maximum)."""
    qmax = np.iinfo(dtype).max
    return np.clip(np.rint(weights.astype(np.float64) / scale), 0, qmax).astype(dtype)


@dataclass(frozen=True)
class Postings:
    """Term -> (doc ids ascending, quantized impacts), as CSR over the vocabulary."""

    indptr: np.ndarray  # int64, vocab_size + 1
    docs: np.ndarray  # int32
    impacts: np.ndarray  # uint8 | uint16
    scale: float
    max_error: float  # largest |weight - impact * scale| over all postings
    dropped: int  # non-zero weights that quantize to 0 and so have no posting


def build_postings(vectors: SparseVectors, vocab_size: int, quantization: str = "u16") -> Postings:
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {sorted(QUANTIZATIONS)}, got {quantization!r}")
    dtype = QUANTIZATIONS[quantization]
    n_docs = len(vectors)
    scale = quantization_scale(float(vectors.values.max()) if vectors.nnz else 0.0, dtype)
    q = quantize(vectors.values, scale, dtype)
    max_error = float(np.abs(vectors.values.astype(np.float64) - q * scale).max()) if vectors.nnz else 0.0
    # copies: scipy shares the arrays it is given, and eliminate_zeros compacts them in place
    by_doc = sp.csr_matrix((q, vectors.indices.copy(), vectors.indptr.copy()), shape=(n_docs, vocab_size))
    by_doc.eliminate_zeros()
    by_term = by_doc.tocsc()
    by_term.sort_indices()
    return Postings(
        indptr=by_term.indptr.astype(np.int64),
        docs=by_term.indices.astype(np.int32),
        impacts=by_term.data.astype(dtype),
        scale=scale,
        max_error=max_error,
        dropped=int(vectors.nnz - by_doc.nnz),
    )
