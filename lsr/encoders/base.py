"""The one interface every encoder implements, so pipelines and retrievers take any of them.

Sparse encoders (SPLADE, BM25) return :class:`SparseVectors` over their ``vocab``; dense
encoders return unit float32 rows. Capability flags tell callers what an encoder can do
instead of them testing its class or model name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lsr.data.vectors import SparseVectors


@runtime_checkable
class Encoder(Protocol):
    """``name`` is what an index manifest records to load the encoder again.

    - ``sparse``: outputs SparseVectors over ``vocab`` (else dense rows of ``dim`` floats).
    - ``per_document``: a document's vector depends on that document alone. False for BM25,
      whose weights need statistics of the whole collection: its ``encode_documents`` takes
      the whole corpus in one call, and encoding a lone document is meaningless.
    """

    name: str
    sparse: bool
    per_document: bool

    def encode_documents(self, texts: Sequence[str], *, batch_size: int | None = None,
                         show_progress_bar: bool | None = None) -> SparseVectors | np.ndarray: ...

    def encode_queries(self, texts: Sequence[str], *, batch_size: int | None = None,
                       show_progress_bar: bool | None = None) -> SparseVectors | np.ndarray: ...

    def settings(self) -> dict[str, Any]:
        """Settings recorded in an index manifest, enough to rebuild the query side."""
        ...
