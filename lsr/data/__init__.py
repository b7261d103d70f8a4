"""Loading and validating collections, queries and sparse vectors."""

from lsr.data.beir import Document, Query, iter_corpus, load_corpus, load_queries, resolve_dataset
from lsr.data.vectors import SparseVectors, read_vectors_jsonl, write_vectors_jsonl

__all__ = [
    "Document",
    "Query",
    "SparseVectors",
    "iter_corpus",
    "load_corpus",
    "load_queries",
    "read_vectors_jsonl",
    "resolve_dataset",
    "write_vectors_jsonl",
]
