"""From document vectors to postings: transposition and impact quantization."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.errors import DataError
from lsr.index.kernels.quantize import quantize_into
from lsr.index.kernels.transpose import count_terms, scatter_rows
from lsr.util import machine_threads, thread_map

QUANTIZATIONS = {"u8": np.uint8, "u16": np.uint16}
# A positive weight below half an impact unit is stored as 1 unit, never dropped: a posting
# lost to rounding is a document no query finds. Their count is reported (raised_postings);
# past RAISED_WARN of the weights the step is too coarse for the data (typically one outlier
# weight sets it) and the build summary says to use u16.
RAISED_WARN = 0.01

def id_dtype(limit: int) -> type:
    """The narrowest of uint16, uint32 and int64 holding every value below ``limit``: term ids,
    block ids and block posting offsets are stored this narrow (index format 2; index format 1
    stored int32 and int64): a fifth off the bytes of splade-gcide indexed with approx at
    n_postings 58 (452 -> 370 MB)."""
    for dtype in (np.uint16, np.uint32):
        if limit <= np.iinfo(dtype).max + 1:
            return dtype
    return np.int64


def quantization_scale(max_weight: float, dtype: np.dtype) -> float:
    """Weight of one impact unit: the largest weight maps to the dtype's maximum, so none overflows."""
    qmax = np.iinfo(dtype).max
    return float(max_weight) / qmax if max_weight > 0 else 1.0


def quantize(weights: np.ndarray, scale: float, dtype: np.dtype) -> np.ndarray:
    """Round weights to the nearest impact unit, never above the dtype's maximum and, for a
    positive weight, never below 1 (see RAISED_WARN)."""
    return _quantized(weights, scale, dtype)[0]


def _quantized(weights: np.ndarray, scale: float, dtype: np.dtype) -> tuple[np.ndarray, int, float]:
    """quantize's impacts, how many positive weights were raised to 1, and the largest error."""
    out = np.empty(len(weights), dtype=dtype)
    raised, max_error = quantize_into(np.asarray(weights), float(scale), float(np.iinfo(dtype).max), out)
    return out, int(raised), float(max_error)


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
                   max_weight: float | None = None, threads: int | None = None) -> Postings:
    """``max_weight`` (default: the vectors' largest) is the weight mapped to the largest impact:
    the shards of one sharded index share it, so that they score as one index would. The
    transposition runs on ``threads`` threads (default: every core)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {sorted(QUANTIZATIONS)}, got {quantization!r}")
    dtype = QUANTIZATIONS[quantization]
    n_docs = len(vectors)
    largest = float(vectors.values.max()) if vectors.nnz else 0.0
    if max_weight is not None and not max_weight >= largest:
        raise ValueError(f"max_weight {max_weight!r} is below the largest document weight {largest}")
    scale = quantization_scale(largest if max_weight is None else max_weight, dtype)
    indptr, docs, weights = transpose(vectors.indptr, vectors.indices, vectors.values, vocab_size, threads)
    q, raised, max_error = _quantized(weights, scale, dtype)  # zero weights (not postings) change neither count
    return Postings(indptr=indptr, docs=docs, impacts=q, weights=weights, scale=scale, max_error=max_error, raised=raised)


def posting_weights(indptr: np.ndarray, terms: np.ndarray, weights: np.ndarray, vocab_size: int) -> np.ndarray:
    """The float weight of each posting, in posting order, from the forward rows."""
    return transpose(indptr, terms, weights, vocab_size)[2]


def transpose(indptr: np.ndarray, terms: np.ndarray, weights: np.ndarray, vocab_size: int,
              threads: int | None = None) -> tuple[np.ndarray, ...]:
    """Postings of forward rows: (indptr over terms, docs ascending within a term, each
    posting's float32 weight), zero weights left out (no posting scores them)."""
    check_rows(indptr, terms, len(weights), vocab_size)
    return transposed(indptr, terms, weights, vocab_size, False, threads)


def transposed(indptr: np.ndarray, terms: np.ndarray, weights: np.ndarray, vocab_size: int, keep_zeros: bool,
               threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`transpose` of rows known to be well formed, zero weights kept if ``keep_zeros``,
    on ``threads`` threads (default: every core). Each range of rows counts its terms, then
    scatters from where its postings of each term start (after those of the ranges before it),
    so that documents ascend within a term whatever the number of threads."""
    indptr = np.asarray(indptr, dtype=np.int64)
    terms, weights = np.asarray(terms), np.asarray(weights, dtype=np.float32)
    spans = row_spans(indptr, threads or machine_threads())
    counts = np.zeros((len(spans), vocab_size), dtype=np.int64)
    thread_map(lambda i: count_terms(indptr, terms, weights, keep_zeros, *spans[i], counts[i]), range(len(spans)), threads)
    ptr = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(counts.sum(axis=0), out=ptr[1:])
    starts = ptr[:-1] + np.cumsum(counts, axis=0) - counts  # row i: where range i's postings of each term go
    docs = np.empty(ptr[-1], dtype=np.int32)
    out_w = np.empty(ptr[-1], dtype=np.float32)
    thread_map(lambda i: scatter_rows(indptr, terms, weights, keep_zeros, *spans[i], starts[i], docs, out_w), range(len(spans)),
               threads)
    return ptr, docs, out_w


def row_spans(indptr: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Up to ``n`` ranges of consecutive rows, ascending, of about equal entries (for work that
    costs about a row's length); one empty range when there are no rows."""
    cuts = np.searchsorted(indptr, np.linspace(0, indptr[-1], n + 1)[1:-1])
    bounds = sorted({0, *(int(c) for c in cuts if 0 < c < len(indptr) - 1), len(indptr) - 1})
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:])] or [(0, 0)]


def check_rows(indptr: np.ndarray, terms: np.ndarray, n_weights: int, vocab_size: int) -> None:
    """CSR rows the kernels can walk: offsets from 0 to the entry count, never decreasing,
    term ids in the vocabulary, one weight per entry."""
    indptr, terms = np.asarray(indptr), np.asarray(terms)
    if (indptr.ndim != 1 or indptr.shape[0] == 0 or indptr[0] != 0 or indptr[-1] != terms.shape[0]
            or np.any(indptr[1:] < indptr[:-1]) or n_weights != terms.shape[0]
            or (terms.size and (int(terms.min()) < 0 or int(terms.max()) >= vocab_size))):
        raise DataError(f"sparse rows are malformed: row offsets must run from 0 to the {terms.shape[0]} entries without "
                        f"decreasing, with one weight per entry and term ids in [0, {vocab_size})")


def raised_warning(stats: dict, quantization: str) -> str | None:
    """The build summary's warning when many weights were raised to one impact step."""
    raised, total = stats.get("raised_postings", 0), max(1, stats.get("num_postings", 0))
    if raised <= RAISED_WARN * total:
        return None
    return (f"{raised:,} of {total:,} weights ({raised / total:.1%}) were below half a {quantization} impact step and are "
            f"stored as one step (kept, but coarsened): the largest weight sets the step; --quantization u16 is 256x finer")
