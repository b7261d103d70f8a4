"""Numba kernels of the index, one concept a module; every kernel takes plain arrays.

All are compiled ``nopython`` (``njit``), ``nogil`` (search threads run in parallel) and
``cache=True`` (no recompiling per process), with the options in :data:`JIT`.
"""

JIT = dict(nogil=True, cache=True)
