"""The index layer: arrays and Numba kernels only (no models, no torch).

:class:`SparseIndex` builds, saves, loads and searches an inverted index of sparse vectors;
:mod:`lsr.index.kernels` holds the kernels, one concept a module; :mod:`lsr.index.modes`
declares the sparse search modes and their knobs.
"""

from lsr.index.sparse import Hits, SparseIndex

__all__ = ["Hits", "SparseIndex"]
