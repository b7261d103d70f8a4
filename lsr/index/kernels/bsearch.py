"""Binary search over an ascending slice, the step of every merge of sorted term lists."""

from __future__ import annotations

import numba as nb
import numpy as np

from lsr.index.kernels import JIT


@nb.njit(inline="always", **JIT)
def lower_bound(arr, lo, hi, value) -> int:
    """The first position in arr[lo:hi] (ascending) holding a value >= ``value`` (hi if none).
    (lo, hi >= 0; the probe is unsigned, so Numba adds no negative-index wrap-around to it.)"""
    while lo < hi:
        m = (lo + hi) >> 1
        if arr[np.uint64(m)] < value:
            lo = m + 1
        else:
            hi = m
    return lo
