"""lsr: learned sparse retrieval with SPLADE encoders and a Numba inverted index."""

from lsr.data import SparseVectors
from lsr.encoders import SpladeEncoder
from lsr.errors import DataError, IndexFormatError, LsrError

__all__ = ["DataError", "IndexFormatError", "LsrError", "SparseVectors", "SpladeEncoder"]
__version__ = "0.1.0"
