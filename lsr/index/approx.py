"""Approximate search structure (clustered, summarized posting lists), its knobs and auto-tuning.

Kernels are in :mod:`lsr.index.kernels.approx_build` and ``approx_search``;
the knobs are in :mod:`lsr.index.modes`. The structure lives in the same index directory
as the exact-search arrays (files prefixed ``approx_``), so one index answers both modes. It
holds its own compact forward index (each document's narrowest unsigned term ids, then its
quantized impacts, in one run: 3 bytes an entry with u8 impacts instead of the float forward
index's 8), so approximate search reads none of the exact-search arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from lsr.errors import DataError, IndexFormatError
from lsr.index.build import row_spans, transposed
from lsr.index.kernels import approx_build, approx_search, bits, forward
from lsr.index.validate import Checker
from lsr.index.kernels.approx_search import CHECKPOINT, STAT_DOC_ENTRIES, STAT_SUMMARY_ENTRIES
from lsr.index.kernels.query import query_error
from lsr.util import machine_threads, offsets, thread_map

# Layout of the arrays: 2 added the compact forward index (approx_fwd_ptr, approx_fwd_terms
# beside approx_fwd_impacts); 3 packs each document's terms and impacts into one run
# (approx_fwd_rows); 4 stores the summaries' runs as start bits with a checkpoint every
# CHECKPOINT summary terms (approx_comp_ckpt, approx_ent_first instead of approx_comp_start and
# approx_lst_ent_ptr) and block ids bit-packed (approx_ent_blk). Older structures load by
# converting what they hold (layout 1: the exact-search forward index's rows and terms), so older
# index directories keep working unchanged.
LAYOUT = 4
_ALL = np.zeros(0, dtype=np.uint8)  # the kernels' "no mask"

@dataclass(frozen=True)
class ApproxSettings:
    """Build settings (Seismic's names and meanings). ``n_postings`` x the vocabulary size is
    how many postings static pruning keeps overall (the heaviest), as Seismic counts it: a
    vocabulary term that never occurs still adds to the budget, so the same settings keep the
    same postings in both engines. None keeps them all (no static pruning)."""

    n_postings: int | None = 4000
    max_fraction: float = 1.5  # a list keeps at most max_fraction x n_postings postings
    centroid_fraction: float = 0.1  # blocks per list, as a fraction of its kept postings
    summary_energy: float = 0.4  # fraction of a block summary's mass kept
    doc_cut: int = 15  # terms of a document's sketch compared against centroids
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (
            ("n_postings", self.n_postings is None or (isinstance(self.n_postings, int) and self.n_postings >= 1), ">= 1 (or None)"),
            ("max_fraction", self.max_fraction >= 1.0, ">= 1"),
            ("centroid_fraction", 0.0 < self.centroid_fraction <= 1.0, "in (0, 1]"),
            ("summary_energy", 0.0 < self.summary_energy <= 1.0, "in (0, 1]"),
            ("doc_cut", isinstance(self.doc_cut, int) and self.doc_cut >= 1, ">= 1"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"approx setting {name} must be {rule}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class ApproxIndex:
    """Term -> blocks of similar documents (pruned list) -> documents, plus block summaries
    stored per list as an inverted index (term -> run of (block, u8 code)) and per-block scales,
    and the compact forward index the documents are scored from.
    Summaries are most of the bytes, so a term costs its id, one start bit per entry and a share
    of a checkpoint (not an offset), and a block id only the bits the longest list needs, as in
    Seismic's summaries (bit-packed ids, Elias-Fano offsets)."""

    fwd_ptr: np.ndarray  # int64 [docs + 1]: document -> its run of fwd_rows words
    fwd_rows: np.ndarray  # term dtype: per document its term ids (ascending), then its impacts (kernels.forward.pack_rows)
    lst_blk_ptr: np.ndarray  # int64 [vocab + 1]: term -> range of global block ids
    blk_doc_ptr: np.ndarray  # int64 [blocks + 1]: block -> range of blk_docs
    blk_docs: np.ndarray  # int32
    lst_comp_ptr: np.ndarray  # int64 [vocab + 1]: term's list -> range of its summary terms
    comp_terms: np.ndarray  # narrowest unsigned: summary terms, ascending within a list
    comp_ckpt: np.ndarray  # narrowest unsigned: first entry of every CHECKPOINT-th summary term (global)
    ent_first: np.ndarray  # uint64 bits [entries + 1]: entry starts a summary term's run (the last bit: an end sentinel)
    ent_blk: np.ndarray  # uint64 fields of blk_bits bits [entries]: block, local to its list
    ent_code: np.ndarray  # uint8: value = code x blk_scale[block]
    blk_scale: np.ndarray  # float32 [blocks]
    fwd_impacts: np.ndarray = field(metadata={"view": True})  # fwd_rows' memory in the impact dtype: not a file

    @property
    def n_blocks(self) -> int:
        return self.blk_doc_ptr.shape[0] - 1

    @property
    def blk_bits(self) -> int:
        """Bits of an approx_ent_blk field: enough for the longest list's block ids."""
        return bits.bit_width(self.longest_list)

    @property
    def n_entries(self) -> int:
        return self.ent_code.shape[0]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays().values())

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name[len("approx_"):]) for name in self.names()}

    @classmethod
    def load(cls, entry: Mapping[str, Any], load: Any, forward_indptr: np.ndarray, forward_terms: np.ndarray,
             vocab_size: int, impact_dtype: type | None) -> "ApproxIndex":
        """The structure of an index directory (``load(name)`` reads one array); one written
        before :data:`LAYOUT` 4 gets its summary runs converted, before layout 3 also its rows
        packed from what it holds (before layout 2, the exact forward index's rows and terms).
        ``impact_dtype`` is the manifest's quantization (None when it names none: refused)."""
        layout = entry.get("layout", 1) if isinstance(entry, Mapping) else None
        if not isinstance(layout, int) or not 1 <= layout <= LAYOUT:
            raise IndexFormatError(f"the manifest's approx entry has layout {layout!r}; this lsr reads layouts 1 to {LAYOUT}: "
                                   "upgrade lsr, or rebuild the structure with `lsr tune --rebuild`")
        c = Checker(f"the approx structure (layout {layout})")  # viewing and packing read these: checked first
        if impact_dtype is None:
            c.fail("the manifest lacks its stats or settings")
        runs = ("comp_ckpt", "ent_first", "ent_blk")
        rest = {name: load(f"approx_{name}") for name in cls._structure_names() if layout >= 4 or name not in runs}
        if layout < 4:
            rest.update(_runs_of_layout_3(c, rest, load("approx_comp_start"), load("approx_lst_ent_ptr"),
                                          load("approx_ent_blk"), vocab_size))
        if layout >= 3:
            rows = load("approx_fwd_rows")
            c.array("approx_fwd_rows", rows, (np.uint8, np.uint16, np.uint32))
            if rows.itemsize < np.dtype(impact_dtype).itemsize:
                c.fail(f"approx_fwd_rows has {rows.dtype} words, narrower than the {np.dtype(impact_dtype).name} impacts")
            return cls(fwd_ptr=load("approx_fwd_ptr"), fwd_rows=rows, fwd_impacts=rows.view(impact_dtype), **rest)
        if layout == 2:
            indptr, terms = load("approx_fwd_ptr"), load("approx_fwd_terms")
        else:
            indptr, terms = np.asarray(forward_indptr), np.asarray(forward_terms)
        impacts = load("approx_fwd_impacts")
        c.array("approx_fwd_terms", terms, (np.uint8, np.uint16, np.uint32, np.int32))
        c.array("approx_fwd_ptr", indptr, (np.int64,))
        c.pointers("approx_fwd_ptr", indptr, indptr.shape[0] - 1, terms.shape[0])
        c.array("approx_fwd_impacts", impacts, (impact_dtype,), terms.shape[0])
        return cls(**packed_forward(indptr, terms, impacts, vocab_size), **rest)

    @classmethod
    def names(cls) -> list[str]:
        """The arrays written to the index directory."""
        return [f"approx_{f.name}" for f in fields(cls) if not f.metadata.get("view")]

    @classmethod
    def _structure_names(cls) -> list[str]:
        """The fields of the lists, blocks and summaries (all but the forward index)."""
        return [f.name for f in fields(cls) if not f.name.startswith("fwd_")]

    def forward_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The forward index unpacked: (entry offsets [docs + 1], term ids, impacts)."""
        per = self.fwd_rows.itemsize // self.fwd_impacts.itemsize
        n = forward.packed_entries(self.fwd_ptr[:-1], self.fwd_ptr[1:], per)
        entry_ptr = offsets(n)
        within = np.arange(entry_ptr[-1]) - np.repeat(entry_ptr[:-1], n)
        start = np.repeat(self.fwd_ptr[:-1], n)
        return entry_ptr, self.fwd_rows[start + within], self.fwd_impacts[(start + np.repeat(n, n)) * per + within]

    def validate(self, c: Checker, n_docs: int, vocab_size: int, nnz: int, dtype: type) -> None:
        """Refuse arrays the search kernels would read out of bounds (see lsr.index.validate)."""
        n_blocks = self.blk_doc_ptr.shape[0] - 1
        c.pointers("approx_fwd_ptr", self.fwd_ptr, n_docs, self.fwd_rows.shape[0])
        per = self.fwd_rows.itemsize // np.dtype(dtype).itemsize
        entry_ptr, terms, _ = self.forward_entries()
        n = np.diff(entry_ptr)
        if np.any(np.diff(self.fwd_ptr) != _packed_words(n, per)) or entry_ptr[-1] != nnz:
            c.fail(f"approx_fwd_ptr gives rows of {entry_ptr[-1]} entries in all, or of lengths no packed row has, "
                   f"expected {nnz} entries")
        c.ids("approx_fwd_rows", terms, vocab_size)
        c.ascending_within("approx_fwd_rows", terms, entry_ptr)
        c.pointers("approx_lst_blk_ptr", self.lst_blk_ptr, vocab_size, n_blocks)
        c.pointers("approx_blk_doc_ptr", self.blk_doc_ptr, n_blocks, self.blk_docs.shape[0])
        c.array("approx_blk_docs", self.blk_docs, (np.int32,))
        c.ids("approx_blk_docs", self.blk_docs, n_docs)
        c.pointers("approx_lst_comp_ptr", self.lst_comp_ptr, vocab_size, self.comp_terms.shape[0])
        c.ids("approx_comp_terms", self.comp_terms, vocab_size)
        c.ascending_within("approx_comp_terms", self.comp_terms, self.lst_comp_ptr)
        c.array("approx_ent_code", self.ent_code, (np.uint8,))
        n, n_comps = self.n_entries, self.comp_terms.shape[0]
        c.array("approx_ent_first", self.ent_first, (np.uint64,), bits.n_words(n + 1, 1))
        c.array("approx_ent_blk", self.ent_blk, (np.uint64,), bits.n_words(n, self.blk_bits))
        c.array("approx_comp_ckpt", self.comp_ckpt, (np.uint8, np.uint16, np.uint32, np.uint64), -(-n_comps // CHECKPOINT))
        first = bits.unpack_flags(self.ent_first, n + 1)
        starts = np.flatnonzero(first[:n])
        if not first[n] or starts.shape[0] != n_comps or (n and starts[0] != 0):
            c.fail(f"approx_ent_first marks {starts.shape[0]} runs (the first at entry {starts[:1].tolist()}, the end bit "
                   f"{'set' if first[n] else 'missing'}), expected one per summary term ({n_comps}) from entry 0")
        if not np.array_equal(self.comp_ckpt.astype(np.int64), starts[::CHECKPOINT]):
            c.fail(f"approx_comp_ckpt does not give the first entry of every {CHECKPOINT}th summary term's run")
        list_of_comp = np.repeat(np.arange(vocab_size), np.diff(self.lst_comp_ptr))
        list_of_entry = np.repeat(list_of_comp, np.diff(np.append(starts, n)))
        if n and np.any(bits.unpack_fields(self.ent_blk, n, self.blk_bits) >= np.diff(self.lst_blk_ptr)[list_of_entry]):
            c.fail("approx_ent_blk names a block outside its list")
        c.array("approx_blk_scale", self.blk_scale, (np.float32,), n_blocks)
        c.finite("approx_blk_scale", self.blk_scale)

    def kernel_args(self) -> tuple:
        """The list, block, summary and forward arrays in the order the search kernels take them."""
        return (self.lst_blk_ptr, self.blk_doc_ptr, self.blk_docs, self.lst_comp_ptr, self.comp_terms, self.comp_ckpt,
                self.ent_first, self.ent_blk, self.blk_bits, self.ent_code, self.blk_scale, self.fwd_ptr, self.fwd_rows,
                self.fwd_impacts)

    @property
    def longest_list(self) -> int:
        """Blocks of the longest list: the size of the kernels' per-list scratch."""
        return int(np.diff(self.lst_blk_ptr).max(initial=0))


class ApproxScratch:
    """One thread's reusable buffers of the single-query kernel, zeroed where it needs zeros
    (the kernel leaves them so): a query allocates nothing."""

    def __init__(self, approx: ApproxIndex, vocab_size: int, n_docs: int) -> None:
        self.qdense = np.zeros(vocab_size, dtype=np.float32)
        self.visited = np.zeros(n_docs, dtype=np.uint8)
        self.seen = np.empty(n_docs, dtype=np.int32)
        self.dots = np.empty(max(1, approx.longest_list), dtype=np.float32)
        self._longest_list = approx.longest_list
        self.stats = np.zeros(approx_search.N_STATS, dtype=np.int64)
        self.fit(64, 10)

    def fit(self, n_terms: int, k: int) -> None:
        """Make room for a raw query of ``n_terms`` terms and ``k`` hits."""
        self.q_terms = np.empty(n_terms, dtype=np.int32)
        self.q_weights = np.empty(n_terms, dtype=np.float32)
        self.order = np.empty(self._longest_list + 2 * n_terms, dtype=np.int64)
        self.heap_s = np.empty(k, dtype=np.float32)
        self.heap_d = np.empty(k, dtype=np.int32)


class ApproxSearcher:
    """The thin single-query entry point of ``mode="approx"``: knobs, k and the arrays bound
    once, buffers reused, so a call is argument passing plus one kernel (which also does what
    SparseIndex.prepare does for one query). Not for concurrent use: one per thread."""

    def __init__(self, approx: ApproxIndex, vocab_size: int, n_docs: int, scale: float, weight_limit: float, k: int,
                 query_cut: int, heap_factor: float, scratch: ApproxScratch | None = None) -> None:
        self.k, self.scale = k, scale
        self.s = scratch or ApproxScratch(approx, vocab_size, n_docs)
        self._vocab_size, self._limit = vocab_size, weight_limit
        self._head = (weight_limit, int(query_cut), np.float32(heap_factor), k)
        self._arrays = approx.kernel_args()

    def search_raw(self, terms: np.ndarray, weights: np.ndarray, allowed: np.ndarray = _ALL,
                   out_docs: np.ndarray | None = None, out_scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and float32 scores in impact units (multiply by ``scale``) of one query
        given as term ids and weights in any order (repeats summed, weights <= 0 ignored)."""
        docs = np.empty(self.k, np.int32) if out_docs is None else out_docs
        scores = np.empty(self.k, np.float32) if out_scores is None else out_scores
        return self._call(terms, weights, allowed, 1.0, docs, scores)

    def search(self, terms: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows (int32) and scores (float64, the index's units) of one query."""
        return self._call(terms, weights, _ALL, self.scale, np.empty(self.k, np.int32), np.empty(self.k, np.float64))

    def _call(self, terms: np.ndarray, weights: np.ndarray, allowed: np.ndarray, scale: float, docs: np.ndarray,
              scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.s
        if terms.shape[0] > s.q_terms.shape[0] or self.k > s.heap_s.shape[0]:
            s.fit(max(terms.shape[0], s.q_terms.shape[0]), max(self.k, s.heap_s.shape[0]))
        n = approx_search.search_approx_raw(terms, weights, *self._head, scale, *self._arrays, allowed, s.q_terms, s.q_weights,
                                            s.qdense, s.visited, s.seen, s.dots, s.order, s.heap_s, s.heap_d, docs, scores,
                                            s.stats)
        if n < 0:
            raise query_error(n, terms, weights, self._vocab_size, self._limit)
        return docs[:n], scores[:n]


def build_approx(
    fwd_indptr: np.ndarray,
    fwd_terms: np.ndarray,
    fwd_weights: np.ndarray,
    vocab_size: int,
    fwd_impacts: np.ndarray,
    settings: ApproxSettings,
    postings: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    threads: int | None = None,
) -> tuple[ApproxIndex, dict[str, Any]]:
    """Prune, cluster and summarize every posting list; returns the structure and its statistics.

    Pruning and clustering use the float weights (finer than impacts); summaries use the
    impacts, so that summary dot products and document scores share one unit. ``postings``
    (indptr, docs, float weights) are the rows' postings, zero weights included, when the
    caller has them already: the transposition is the costliest step after the summaries.
    The lists are clustered and summarized on ``threads`` threads (default: every core); the
    structure is the same for any number.
    """
    p_indptr, p_docs, p_weights = postings or transposed(fwd_indptr, fwd_terms, fwd_weights, vocab_size, True, threads)
    nnz = p_docs.shape[0]
    threshold, cap = -np.inf, nnz
    if settings.n_postings is not None:
        budget = settings.n_postings * vocab_size
        if budget < nnz:
            threshold = float(approx_build.kth_smallest(p_weights, nnz - budget))
        cap = max(1, int(settings.max_fraction * settings.n_postings))
    n_threads = threads or machine_threads()
    n_spans = 4 * n_threads if n_threads > 1 else 1
    at_least = np.float32(threshold)
    kept = np.zeros(vocab_size, dtype=np.int64)
    thread_map(lambda span: approx_build.prune_counts(p_indptr, p_weights, at_least, cap, *span, kept), _spans(p_indptr, n_spans),
               threads)
    l_indptr = offsets(kept)
    l_docs = np.empty(l_indptr[-1], dtype=np.int32)
    thread_map(lambda span: approx_build.prune_fill(p_indptr, p_docs, p_weights, at_least, l_indptr, *span, l_docs),
               _spans(p_indptr, n_spans), threads)
    n_docs = fwd_indptr.shape[0] - 1
    top_t = np.empty((n_docs, settings.doc_cut), dtype=np.int32)
    top_w = np.empty((n_docs, settings.doc_cut), dtype=np.float32)
    thread_map(lambda span: approx_build.top_terms(fwd_indptr, fwd_terms, fwd_weights, *span, top_t, top_w),
               _spans(np.asarray(fwd_indptr), n_spans), threads)

    most_blocks = max(1, int(settings.centroid_fraction * cap))  # of a list: its centroids, at most
    term_like, block_like = np.zeros(1, _narrowest(vocab_size)), np.zeros(1, _narrowest(most_blocks))

    def lists(span: tuple[int, int]) -> tuple[np.ndarray, ...]:
        *arrays, n_blk, n_comp, n_ent = approx_build.cluster_and_summarize(
            l_indptr, l_docs, span[0], span[1], settings.centroid_fraction, settings.seed, np.float32(settings.summary_energy),
            top_t, top_w, fwd_indptr, fwd_terms, fwd_weights, fwd_impacts, vocab_size, term_like, block_like)
        return tuple(a[:n] for a, n in zip(arrays, (None, n_blk, n_blk, None, None, n_comp, n_comp, n_ent, n_ent)))

    spans = _spans(l_indptr, n_spans)
    parts = [part for _, part in sorted(zip(spans, thread_map(lists, spans, threads)), key=lambda sp: sp[0])]
    docs, sizes, scales, lst_blocks, lst_comps, comps, counts, ent_blk, codes = (np.concatenate(field) for field in zip(*parts))
    del parts
    structure = ApproxIndex(
        **packed_forward(np.asarray(fwd_indptr, dtype=np.int64), np.asarray(fwd_terms), fwd_impacts, vocab_size),
        lst_blk_ptr=offsets(lst_blocks),
        blk_doc_ptr=offsets(sizes),
        blk_docs=docs,
        lst_comp_ptr=offsets(lst_comps),
        comp_terms=comps,
        **_runs(counts, codes.shape[0]),
        ent_blk=bits.pack_fields(ent_blk, bits.bit_width(int(lst_blocks.max(initial=0)))),
        ent_code=codes,
        blk_scale=scales,
    )
    stats = {
        "kept_postings": int(l_docs.shape[0]),
        "kept_fraction": round(l_docs.shape[0] / nnz, 4) if nnz else 1.0,
        "blocks": structure.n_blocks,
        "summary_entries": int(structure.ent_code.shape[0]),
        "bytes": structure.nbytes,
    }
    return structure, stats


def _spans(indptr: np.ndarray, n: int) -> list[tuple[int, int]]:
    """:func:`row_spans`, the largest first, so that threads taking them in turn finish together."""
    return sorted(row_spans(indptr, n), key=lambda s: indptr[s[0]] - indptr[s[1]])


def packed_forward(indptr: np.ndarray, terms: np.ndarray, impacts: np.ndarray, vocab_size: int) -> dict[str, np.ndarray]:
    """The compact forward index's fields from CSR rows: each document's terms then impacts in
    one run of words of the narrowest term dtype that is at least as wide as the impacts."""
    word = max(np.dtype(_narrowest(vocab_size)), impacts.dtype, key=lambda t: t.itemsize).type
    per = np.dtype(word).itemsize // impacts.dtype.itemsize
    ptr = offsets(_packed_words(np.diff(indptr), per))
    rows = np.zeros(ptr[-1], dtype=word)
    rows_impacts = rows.view(impacts.dtype)
    forward.pack_rows(np.asarray(indptr, dtype=np.int64), terms, impacts, ptr, rows, rows_impacts)
    return {"fwd_ptr": ptr, "fwd_rows": rows, "fwd_impacts": rows_impacts}


def _packed_words(n: np.ndarray, per: int) -> np.ndarray:
    """Words of packed rows of n entries (the inverse of kernels.forward.packed_entries)."""
    return n + -(-n // per)


def _runs(counts: np.ndarray, n_entries: int) -> dict[str, np.ndarray]:
    """The summary runs' start bits and checkpoints from each summary term's entry count."""
    ckpt = np.empty(-(-counts.shape[0] // CHECKPOINT), dtype=_narrowest(n_entries + 1))
    words = np.zeros(bits.n_words(n_entries + 1, 1), dtype=np.uint64)
    approx_build.summary_runs(counts, n_entries, CHECKPOINT, ckpt, words)
    return {"comp_ckpt": ckpt, "ent_first": words}


def _runs_of_layout_3(c: Checker, rest: dict[str, np.ndarray], comp_start: np.ndarray, lst_ent_ptr: np.ndarray,
                      ent_blk: np.ndarray, vocab_size: int) -> dict[str, np.ndarray]:
    """Summary runs as layouts 1-3 stored them (per summary term its first entry relative to its
    list's, per list its range of entries, one plain block id per entry), as layout 4 stores them;
    checked first, since converting reads them."""
    lst_comp_ptr, lst_blk_ptr, n = rest["lst_comp_ptr"], rest["lst_blk_ptr"], rest["ent_code"].shape[0]
    c.pointers("approx_lst_comp_ptr", lst_comp_ptr, vocab_size, rest["comp_terms"].shape[0])
    c.pointers("approx_lst_blk_ptr", lst_blk_ptr, vocab_size, rest["blk_doc_ptr"].shape[0] - 1)
    c.pointers("approx_lst_ent_ptr", lst_ent_ptr, vocab_size, n)
    c.array("approx_comp_start", comp_start, (np.uint8, np.uint16, np.uint32), rest["comp_terms"].shape[0])
    c.array("approx_ent_blk", ent_blk, (np.uint8, np.uint16, np.uint32), n)
    per_list = np.diff(lst_comp_ptr)
    starts = np.repeat(lst_ent_ptr[:-1], per_list) + comp_start.astype(np.int64)
    ends = np.append(starts[1:], n)
    listed = per_list > 0
    ends[lst_comp_ptr[1:][listed] - 1] = lst_ent_ptr[1:][listed]  # a list's last run ends with the list
    if starts.size != 0 and not (starts[0] == 0 and ends[-1] == n and np.array_equal(starts[1:], ends[:-1])
                                 and np.all(ends > starts)) or (starts.size == 0 and n):
        c.fail("approx_comp_start does not split its lists' summary entries into runs")
    width = bits.bit_width(int(np.diff(lst_blk_ptr).max(initial=0)))
    if ent_blk.size and int(ent_blk.max()) >> width:
        c.fail("approx_ent_blk names a block outside its list")
    return {**_runs(ends - starts, n), "ent_blk": bits.pack_fields(ent_blk, width)}


def _narrowest(limit: int) -> type:
    """The smallest unsigned dtype holding 0..limit - 1."""
    return next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if limit <= np.iinfo(t).max + 1)


# ---- auto-tuning ------------------------------------------------------------------------
QUERY_CUTS = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 50, 65536)
HEAP_FACTORS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.0)
RECALL_MARGIN_SE = 3.0  # standard errors of tuned recall kept above the target (see pick_cheapest)


@dataclass(frozen=True)
class TunedPoint:
    query_cut: int
    heap_factor: float
    recall: float
    cost: float  # mean entries read per query (summary entries + forward entries of scored docs)
    recall_se: float = 0.0  # standard error of the mean recall over the tuning queries
    reached: bool = True  # whether the target was reached with the margin (else the most accurate point)

    def knobs(self) -> dict[str, float]:
        return {"query_cut": self.query_cut, "heap_factor": self.heap_factor}


def recall_at_k(results: Sequence[Sequence[int]], truth: Sequence[Sequence[int]]) -> tuple[float, float]:
    """Mean fraction of each query's true top-k found (queries with no true hit left out), and
    that mean's standard error."""
    scored = np.array([len(set(r) & set(t)) / len(t) for r, t in zip(results, truth) if len(t)])
    if scored.size == 0:
        return 1.0, 0.0
    se = float(scored.std(ddof=1) / np.sqrt(scored.size)) if scored.size > 1 else 0.0
    return float(scored.mean()), se


def pick_cheapest(points: Sequence[TunedPoint], target: float) -> TunedPoint:
    """The cheapest point whose recall reaches the target with ``RECALL_MARGIN_SE`` standard
    errors to spare, else the most accurate one. The margin is for the queries to come: the
    tuning queries are a sample, and the cheapest of many points that pass on them is the one
    most flattered by it. Over the 15 points `lsr bench approx` tuned (150 tuning queries, 150
    held out), held-out recall fell below the tuned recall by 0.73 standard errors on average
    and by up to 2.9 (0.927 -> 0.899 at a target of 0.90), so two standard errors left about one
    to spare at the edge: one held-out miss in 15. Three leave about two; where that moves the
    knobs, they read 10-40% more entries (1M synthetic documents)."""
    good = [p for p in points if p.recall - RECALL_MARGIN_SE * p.recall_se >= target]
    if good:
        return min(good, key=lambda p: (p.cost, -p.recall))
    return replace(max(points, key=lambda p: (p.recall, -p.cost)), reached=False)


def mean_cost(stats: np.ndarray, n_queries: int) -> float:
    """Entries read per query: the two inner loops, summaries and forward rows of scored docs."""
    return float(stats[STAT_SUMMARY_ENTRIES] + stats[STAT_DOC_ENTRIES]) / max(1, n_queries)
