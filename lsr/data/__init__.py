"""Loading and validating collections, queries and sparse vectors."""

from lsr.data.beir import Document, Query, iter_corpus, load_corpus, load_queries, resolve_dataset
from lsr.data.vectors import SparseVectors, read_vectors_jsonl, write_vectors_jsonl
from lsr.data.qrels import Collection, Qrels, load_collection, load_qrels, load_topics, read_run, write_run

__all__ = [
    "Collection",
    "Document",
    "Qrels",
    "Query",
    "SparseVectors",
    "load_collection",
    "load_qrels",
    "load_topics",
    "read_run",
    "write_run",
    "iter_corpus",
    "load_corpus",
    "load_queries",
    "read_vectors_jsonl",
    "resolve_dataset",
    "write_vectors_jsonl",
]
