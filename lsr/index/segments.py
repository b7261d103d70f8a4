"""Several immutable SparseIndex segments, with their deletions, searched as one index.

A collection (:mod:`lsr.retrieval.collection`) is a list of segments, as Lucene's is: new
documents go to new segments, a deletion only marks a row in its segment's bitmap, and merges
replace segments with one. Here each segment answers its own top-k with the deleted (and
filtered-out) rows excluded inside the kernels, and the lists are merged. Rows are global: a
segment's rows follow those of the segments before it, so the tie order (lower row first) is
the order of a single index built from the same documents in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.errors import DataError
from lsr.index.kernels.query import BAD_TERM, query_error
from lsr.index.sparse import Hits, SparseIndex, check_k, check_vocab


@dataclass
class Segments:
    """Segments in order, each with its deleted rows (a bool array, or None for none).

    ``vocab`` is the collection's vocabulary; a segment's vocabulary is a prefix of it (a BM25
    collection's vocabulary grows as documents bring new terms). ``settings`` are what the
    collection was created with: the query encoder (``model``, ``encoder``) and build settings.
    """

    indexes: list[SparseIndex]
    deleted: list[np.ndarray | None]
    vocab: list[str]
    settings: dict[str, Any]
    generation: int = 0
    _offsets: np.ndarray = field(init=False, repr=False)
    _positions: dict[str, int] | None = field(default=None, init=False, repr=False)
    _same_vocab: dict[int, Sequence[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.deleted) != len(self.indexes):
            raise ValueError(f"{len(self.deleted)} deletion bitmaps for {len(self.indexes)} segments")
        for ix, dead in zip(self.indexes, self.deleted):
            if len(ix.vocab) > len(self.vocab) or ix.vocab != self.vocab[: len(ix.vocab)]:
                raise DataError(f"segment {ix.path}: its vocabulary is not a prefix of the collection's")
            if dead is not None and (dead.shape != (ix.num_docs,) or dead.dtype != np.bool_):
                raise DataError(f"segment {ix.path}: deletion bitmap of {dead.shape} {dead.dtype} for {ix.num_docs} documents")
        self._offsets = np.concatenate([[0], np.cumsum([ix.num_docs for ix in self.indexes])]).astype(np.int64)

    @classmethod
    def of(cls, index: SparseIndex) -> "Segments":
        """One index as a one-segment view (its manifest holds the settings)."""
        return cls([index], [None], index.vocab, {k: index.manifest.get(k) for k in ("model", "encoder")})

    # ---- facts --------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        """Rows of every segment, deleted ones included (the global row space)."""
        return int(self._offsets[-1])

    @property
    def num_docs(self) -> int:
        """Live documents."""
        return self.num_rows - sum(int(d.sum()) for d in self.deleted if d is not None)

    @property
    def parts(self) -> frozenset[str]:
        """Optional structures every segment has (an empty collection has them all)."""
        if not self.indexes:
            return frozenset({"approx", "dense"})
        return frozenset.intersection(*(ix.parts for ix in self.indexes))

    def check_k(self, k: int) -> int:
        return check_k(k, self.num_rows)

    def offset(self, s: int) -> int:
        """Global row of segment ``s``'s first row."""
        return int(self._offsets[s])

    def locate(self, row: int) -> tuple[int, int]:
        """(segment position, row in the segment) of a global row."""
        s = int(np.searchsorted(self._offsets, row, side="right") - 1)
        return s, int(row - self._offsets[s])

    def doc_id(self, row: int) -> str:
        s, r = self.locate(row)
        return self.indexes[s].doc_ids[r]

    def doc_ids(self, rows: np.ndarray) -> list[str]:
        """Ids of global rows (one vectorized lookup, not one search per row: k may be 1000)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(self.indexes) == 1:
            ids = self.indexes[0].doc_ids
            return [ids[r] for r in rows.tolist()]
        segs = np.searchsorted(self._offsets, rows, side="right") - 1
        local = (rows - self._offsets[segs]).tolist()
        return [self.indexes[s].doc_ids[r] for s, r in zip(segs.tolist(), local)]

    def positions(self) -> dict[str, int]:
        """Live document id -> global row (built on first use)."""
        if self._positions is None:
            positions: dict[str, int] = {}
            for s, (ix, dead) in enumerate(zip(self.indexes, self.deleted)):
                base = int(self._offsets[s])
                for r, d in enumerate(ix.doc_ids):
                    if dead is None or not dead[r]:
                        positions[d] = base + r
            self._positions = positions
        return self._positions

    def live(self, s: int, allowed: np.ndarray | None = None) -> np.ndarray | None:
        """Segment ``s``'s rows that may be hits: not deleted, and ``allowed`` (None: all)."""
        dead = self.deleted[s]
        if dead is None:
            return allowed
        return ~dead if allowed is None else (allowed & ~dead)

    def live_vectors(self) -> tuple[list[str], SparseVectors]:
        """Every live document's id and float forward weights, in row order, over ``vocab``
        (what an export writes)."""
        ids: list[str] = []
        parts: list[SparseVectors] = []
        for ix, dead in zip(self.indexes, self.deleted):
            keep = np.flatnonzero(~dead) if dead is not None else np.arange(ix.num_docs)
            fwd = SparseVectors(np.asarray(ix.forward_indptr), np.asarray(ix.forward_terms), np.asarray(ix.forward_weights), self.vocab)
            parts.append(fwd.take(keep))
            ids += [ix.doc_ids[r] for r in keep.tolist()]
        if not parts:
            return [], SparseVectors(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), self.vocab)
        return ids, SparseVectors.concat(parts)

    # ---- search -------------------------------------------------------------------------
    def restrict(self, queries: SparseVectors, s: int) -> SparseVectors:
        """Queries over the collection vocabulary as rows over segment ``s``'s (a prefix)."""
        vocab = self.indexes[s].vocab
        if len(vocab) == len(self.vocab):
            return queries  # the segment checks the vocabulary itself
        check_vocab(self.vocab, queries.vocab, self._same_vocab)
        terms = np.asarray(queries.indices)
        if terms.size and (int(terms.min()) < 0 or int(terms.max()) >= len(self.vocab)):
            raise query_error(BAD_TERM, terms, queries.values, len(self.vocab))
        keep = terms < len(vocab)
        kept = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        return SparseVectors(kept[np.asarray(queries.indptr)], terms[keep], np.asarray(queries.values)[keep], vocab)

    def search(self, queries: SparseVectors, k: int = 10, *, mode: str = "exact", threads: int | None = None,
               allowed: Sequence[np.ndarray | None] | None = None, **knobs: Any) -> list[Hits]:
        """Top-k global rows of each query over every live document (see SparseIndex.search);
        ``allowed`` gives each segment's filter (None: no filter)."""
        k = self.check_k(k)
        if len(self.indexes) == 1 and self.deleted[0] is None and (allowed is None or allowed[0] is None):
            return self.indexes[0].search(self.restrict(queries, 0), k, mode=mode, threads=threads, **knobs)
        parts = [
            ix.search(self.restrict(queries, s), k, mode=mode, threads=threads,
                      allowed=self.live(s, None if allowed is None else allowed[s]), **knobs)
            for s, ix in enumerate(self.indexes)
        ]
        if not parts:
            return [Hits(np.zeros(0, np.int64), np.zeros(0)) for _ in range(len(queries))]
        return [merge([p[i] for p in parts], self._offsets, k) for i in range(len(queries))]

    def contributions(self, query: SparseVectors, row: int) -> list[tuple[int, float, float]]:
        s, r = self.locate(row)
        return self.indexes[s].contributions(self.restrict(query, s), r)


def merge(hits: Sequence[Hits], offsets: np.ndarray, k: int) -> Hits:
    """The best k of per-segment hits as global rows: score descending, then the lower row."""
    rows = np.concatenate([h.rows.astype(np.int64) + offsets[s] for s, h in enumerate(hits)])
    scores = np.concatenate([h.scores for h in hits])
    order = np.lexsort((rows, -scores))[:k]
    strategies = sorted({h.strategy for h in hits if h.strategy})
    return Hits(rows[order], scores[order], "+".join(strategies) or None)
