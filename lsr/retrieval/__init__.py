"""The retrieval layer: a :class:`Retriever` puts query encoders, a SparseIndex, its dense part
and fusion together; :mod:`lsr.retrieval.modes` is the one registry of modes and knobs."""

from lsr.retrieval.hybrid import HybridQueries
from lsr.retrieval.modes import MODES, get_mode
from lsr.retrieval.retriever import Query, Retriever, SearchResult

__all__ = ["MODES", "HybridQueries", "Query", "Retriever", "SearchResult", "get_mode"]
