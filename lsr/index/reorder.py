"""Document reordering: give similar documents neighbouring ids so blocks are homogeneous.

Block-max bounds are tight only when a block's documents share their heavy terms.
``dominant`` sorts documents by their heaviest term, then their second heaviest: a cheap
clustering (one pass and a sort, linear in postings) that captures much of that effect.
``bp`` is recursive graph bisection (:mod:`lsr.index.kernels.bp_reorder`): slower to build
(iterations over every posting at each of log2(docs / block) levels, on numba's threads), and
the reordering the literature uses for pruned search.
"""

from __future__ import annotations

import numba
import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.index.kernels.bp_reorder import graph_bisection
from lsr.index.build import id_dtype, row_spans
from lsr.index.kernels.reorder import take_rows, top_two_terms
from lsr.util import machine_threads, offsets, thread_map

REORDERINGS = ("none", "dominant", "bp")
# swap rounds per bisection at most (each stops early once no swap gains); at 1M documents 10
# took 0.61x the time for 0.6% more block entries, 5: 0.41x for 3.4% (bp_timing_splade-synth)
BP_ITERATIONS = 20


def reorder_documents(vectors: SparseVectors, method: str, block_size: int = 32,
                      bp_iterations: int = BP_ITERATIONS) -> np.ndarray:
    """A permutation of document positions (new position -> old position)."""
    if method not in REORDERINGS:
        raise ValueError(f"reorder must be one of {REORDERINGS}, got {method!r}")
    if method == "none" or len(vectors) == 0:
        return np.arange(len(vectors))
    if method == "bp":
        term_type = np.uint16 if len(vectors.vocab) <= 1 << 16 else np.int32  # half the memory traffic
        return graph_bisection(vectors.indptr.astype(np.int64), vectors.indices.astype(term_type), len(vectors.vocab),
                               block_size, bp_iterations, numba.get_num_threads())
    first, second = top_two_terms(vectors.indptr, vectors.indices, vectors.values)
    return np.lexsort((np.arange(len(vectors)), second, first))


def index_rows(vectors: SparseVectors, order: np.ndarray, threads: int | None = None) -> SparseVectors:
    """The rows ``order[0], order[1], ...`` as the index's own arrays: int64 offsets, term ids as
    narrow as the vocabulary allows (:func:`lsr.index.build.id_dtype`), float32 weights, copied
    on ``threads`` threads (default: every core). Narrow from the start, since fresh memory is
    the costliest part of a build, and the caller's arrays are never shared with the index."""
    indptr = np.asarray(vectors.indptr, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    out_ptr = offsets(np.diff(indptr)[order])
    out_t = np.empty(out_ptr[-1], dtype=id_dtype(len(vectors.vocab)))
    out_w = np.empty(out_ptr[-1], dtype=np.float32)
    thread_map(lambda span: take_rows(indptr, vectors.indices, vectors.values, order, out_ptr, *span, out_t, out_w),
               row_spans(out_ptr, threads or machine_threads()), threads)
    return SparseVectors(out_ptr, out_t, out_w, vectors.vocab)
