"""Block-max layout of an index for Block-Max Pruning search (kernels in lsr.index.kernels.blockmax_*)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lsr.index.build import id_dtype
from lsr.index.validate import Checker
from lsr.index.kernels.blockmax_build import count_block_entries, fill_blocks, fill_dense_rows
from lsr.index.kernels.superblock_build import build_superblocks

# A term whose postings touch more than this fraction of blocks keeps a dense row of block
# maxima: summing a contiguous row beats scattering that many (block, max) pairs.
DENSE_FRACTION = 0.125
# Blocks per superblock: superblock bounds cost about 1/SUPERBLOCK of the block bounds.
SUPERBLOCK = 8


@dataclass(frozen=True)
class BlockMax:
    """Per-term block maxima plus a block-local forward index (block -> term -> docs)."""

    block_size: int
    tb_indptr: np.ndarray  # int64 [vocab + 1]: term -> range of (block, max) pairs
    tb_blocks: np.ndarray  # block ids (lsr.index.build.id_dtype)
    tb_max: np.ndarray  # impact dtype
    dense_row: np.ndarray  # int32 [vocab]: row in dense_rows, or -1
    dense_rows: np.ndarray  # impact dtype [n_dense, n_blocks]
    blk_indptr: np.ndarray  # int64 [n_blocks + 1]: block -> range of entries
    blk_terms: np.ndarray  # term ids [entries]: ascending within a block
    entry_ptr: np.ndarray  # [entries + 1]: entry -> range of postings (id_dtype of the postings count + 1)
    blk_offsets: np.ndarray  # uint8: doc offset within the block
    blk_impacts: np.ndarray  # impact dtype
    _superblocks: dict = field(default_factory=dict, compare=False, repr=False)

    ARRAYS = ("tb_indptr", "tb_blocks", "tb_max", "dense_row", "dense_rows", "blk_indptr", "blk_terms",
              "entry_ptr", "blk_offsets", "blk_impacts")

    @property
    def n_blocks(self) -> int:
        return self.blk_indptr.shape[0] - 1

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self.ARRAYS)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"bmp_{name}": getattr(self, name) for name in self.ARRAYS}

    @classmethod
    def from_arrays(cls, block_size: int, arrays: dict[str, np.ndarray]) -> "BlockMax":
        return cls(block_size=block_size, **{name: arrays[f"bmp_{name}"] for name in cls.ARRAYS})

    def validate(self, c: Checker, n_docs: int, vocab_size: int, dtype: type) -> None:
        """Refuse arrays the search kernels would read out of bounds (see lsr.index.validate)."""
        if not 1 <= self.block_size <= 256:
            c.fail(f"block size {self.block_size} is outside 1..256")
        n_blocks = max(1, -(-n_docs // self.block_size))
        c.pointers("bmp_tb_indptr", self.tb_indptr, vocab_size, self.tb_blocks.shape[0])
        c.array("bmp_tb_blocks", self.tb_blocks, (np.int32, id_dtype(n_blocks)))
        c.ids("bmp_tb_blocks", self.tb_blocks, n_blocks)
        c.array("bmp_tb_max", self.tb_max, (dtype,), self.tb_blocks.shape[0])
        c.array("bmp_dense_rows", self.dense_rows, (dtype,), ndim=2)
        if self.dense_rows.shape[0] and self.dense_rows.shape[1] != n_blocks:
            c.fail(f"bmp_dense_rows has {self.dense_rows.shape[1]} columns for {n_blocks} blocks")
        c.array("bmp_dense_row", self.dense_row, (np.int32,), vocab_size)
        c.ids("bmp_dense_row", self.dense_row, self.dense_rows.shape[0], low=-1)
        c.pointers("bmp_blk_indptr", self.blk_indptr, n_blocks, self.blk_terms.shape[0])
        c.array("bmp_blk_terms", self.blk_terms, (np.int32, id_dtype(vocab_size)))
        c.ids("bmp_blk_terms", self.blk_terms, vocab_size)
        c.ascending_within("bmp_blk_terms", self.blk_terms, self.blk_indptr)
        c.pointers("bmp_entry_ptr", self.entry_ptr, self.blk_terms.shape[0], self.blk_offsets.shape[0],
                   (np.int64, id_dtype(self.blk_offsets.shape[0] + 1)))
        c.array("bmp_blk_offsets", self.blk_offsets, (np.uint8,))
        c.ids("bmp_blk_offsets", self.blk_offsets, self.block_size)
        last = self.blk_offsets[self.entry_ptr[self.blk_indptr[n_blocks - 1]]:]  # the last block may be short
        c.ids("bmp_blk_offsets (last block)", last, n_docs - (n_blocks - 1) * self.block_size)
        c.array("bmp_blk_impacts", self.blk_impacts, (dtype,), self.blk_offsets.shape[0])

    def kernel_args(self) -> tuple:
        """The arguments of :func:`lsr.index.kernels.blockmax_search.search_bmp` after the query,
        named one by one: the kernels' order is their own, not this class's field order."""
        return (self.block_size, self.tb_indptr, self.tb_blocks, self.tb_max, self.dense_row, self.dense_rows,
                self.blk_indptr, self.blk_terms, self.entry_ptr, self.blk_offsets, self.blk_impacts)

    def superblock_args(self, c: int = SUPERBLOCK) -> tuple:
        """(c, sb_indptr, sb_ids, sb_max, sb_start) of :mod:`lsr.index.kernels.superblock_search`:
        derived from the block maxima when first asked for (not stored: no format change)."""
        if c not in self._superblocks:
            sb_indptr, sb_ids, sb_max, sb_start = build_superblocks(self.tb_indptr, self.tb_blocks, self.tb_max, c)
            self._superblocks[c] = (c, sb_indptr, sb_ids, sb_max, sb_start)
        return self._superblocks[c]

    @property
    def n_superblocks(self) -> int:
        return -(-self.n_blocks // SUPERBLOCK)


def build_blockmax(p_indptr: np.ndarray, p_docs: np.ndarray, p_impacts: np.ndarray, fwd_indptr: np.ndarray,
                   fwd_terms: np.ndarray, fwd_impacts: np.ndarray, block_size: int) -> BlockMax:
    """Block layout from the postings (docs ascending within each term) and the same entries as
    forward rows (terms ascending within each document, impact 0 where there is no posting)."""
    if not 1 <= block_size <= 256:
        raise ValueError(f"block_size must be in 1..256 (offsets are stored in one byte), got {block_size}")
    n_blocks = max(1, -(-(fwd_indptr.shape[0] - 1) // block_size))
    n_post, n_terms, n_term_blocks = count_block_entries(p_indptr, p_docs, block_size, n_blocks)
    blk_indptr = np.concatenate([[0], np.cumsum(n_terms)]).astype(np.int64)
    post_start = np.concatenate([[0], np.cumsum(n_post)]).astype(np.int64)
    tb_indptr = np.concatenate([[0], np.cumsum(n_term_blocks)]).astype(np.int64)
    n_entries = int(blk_indptr[-1])
    blk_terms = np.empty(n_entries, dtype=id_dtype(p_indptr.shape[0] - 1))
    entry_ptr = np.empty(n_entries + 1, dtype=id_dtype(int(post_start[-1]) + 1))
    blk_offsets = np.empty(int(post_start[-1]), dtype=np.uint8)
    blk_impacts = np.empty(int(post_start[-1]), dtype=p_impacts.dtype)
    tb_blocks = np.empty(int(tb_indptr[-1]), dtype=id_dtype(n_blocks))
    tb_max = np.empty(int(tb_indptr[-1]), dtype=p_impacts.dtype)
    fill_blocks(np.asarray(fwd_indptr, dtype=np.int64), fwd_terms, fwd_impacts, block_size, blk_indptr, post_start, tb_indptr,
                blk_terms, entry_ptr, blk_offsets, blk_impacts, tb_blocks, tb_max)
    dense_terms = np.flatnonzero(n_term_blocks > DENSE_FRACTION * n_blocks).astype(np.int32)
    dense_row = np.full(p_indptr.shape[0] - 1, -1, dtype=np.int32)
    dense_row[dense_terms] = np.arange(dense_terms.shape[0], dtype=np.int32)
    dense_rows = fill_dense_rows(tb_indptr, tb_blocks, tb_max, dense_terms, n_blocks, p_impacts[:1])
    return BlockMax(block_size, tb_indptr, tb_blocks, tb_max, dense_row, dense_rows, blk_indptr, blk_terms,
                    entry_ptr, blk_offsets, blk_impacts)
