"""Inverted index: build, storage, Numba kernels and search."""

from lsr.index.index import Index, SearchResult

__all__ = ["Index", "SearchResult"]
