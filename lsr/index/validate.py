"""Structural checks run on every load: a damaged index is refused, never searched.

The kernels do no bounds checks (Numba's nopython code trusts its arrays), so one flipped bit
in a pointer or id array would read out of bounds, crash the process or silently change a
ranking. Every pointer array is checked to be monotone with the right ends, every id below its
bound and every array of the expected dtype and length: vectorized passes over the arrays,
far cheaper than the sha256 of ``--verify``, which only the latter catches for weights.
"""

from __future__ import annotations

import numpy as np

from lsr.errors import IndexFormatError


class Checker:
    """Checks of one index directory; the first failure raises, naming the array."""

    def __init__(self, where: object) -> None:
        self.where = where

    def fail(self, what: str) -> None:
        raise IndexFormatError(f"{self.where} is damaged: {what}; rebuild it (or restore it from a copy)")

    def array(self, name: str, arr: np.ndarray, dtypes: tuple[type, ...], length: int | None = None, ndim: int = 1) -> None:
        if not isinstance(arr, np.ndarray) or arr.ndim != ndim or arr.dtype.type not in dtypes:
            self.fail(f"{name} has dtype {getattr(arr, 'dtype', type(arr))} and {getattr(arr, 'ndim', '?')} dimensions, "
                      f"expected {ndim}-d {'/'.join(np.dtype(d).name for d in dtypes)}")
        if length is not None and arr.shape[0] != length:
            self.fail(f"{name} holds {arr.shape[0]} entries, expected {length}")

    def pointers(self, name: str, ptr: np.ndarray, rows: int, end: int, dtypes: tuple[type, ...] = (np.int64,)) -> None:
        """CSR offsets: ``rows + 1`` values (int64 unless ``dtypes`` says) from 0 to ``end``, never decreasing."""
        self.array(name, ptr, dtypes, rows + 1)
        if ptr[0] != 0 or ptr[-1] != end:
            self.fail(f"{name} runs from {ptr[0]} to {ptr[-1]}, expected 0 to {end}")
        if rows and np.any(ptr[1:] < ptr[:-1]):
            self.fail(f"{name} decreases")

    def ids(self, name: str, ids: np.ndarray, bound: int, low: int = 0) -> None:
        """Values in ``[low, bound)``."""
        if ids.size and (int(ids.min()) < low or int(ids.max()) >= bound):
            self.fail(f"{name} holds values outside [{low}, {bound})")

    def ascending_within(self, name: str, values: np.ndarray, ptr: np.ndarray) -> None:
        """Values strictly ascend inside each CSR row (the kernels' merges rely on it)."""
        if values.size < 2:
            return
        step = np.diff(values.astype(np.int64)) > 0
        boundary = np.zeros(values.size - 1, dtype=bool)
        starts = ptr[1:-1]
        starts = starts[(starts > 0) & (starts < values.size)]
        boundary[starts - 1] = True
        if not np.all(step | boundary):
            self.fail(f"{name} does not ascend within a row")

    def finite(self, name: str, arr: np.ndarray, nonnegative: bool = True) -> None:
        if arr.size and (not np.isfinite(arr).all() or (nonnegative and arr.min() < 0)):
            self.fail(f"{name} holds non-finite{' or negative' if nonnegative else ''} values")
