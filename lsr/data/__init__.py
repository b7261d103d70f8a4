"""Loading and validating collections, queries, judgments, runs and sparse vectors.

One module per format: ``beir`` (corpus and queries in BEIR layout), ``topics`` (TREC SGML too),
``qrels``, ``runs`` (TREC runs), ``collection`` (a test collection by name) and ``vectors``.
Importing this package loads only the standard library and numpy.
"""

from lsr.data.beir import Document, Query, iter_corpus, load_corpus, load_queries, resolve_dataset
from lsr.data.collection import ALIASES, IGNORE_IDENTICAL_IDS, RELEVANCE_LEVELS, Collection, collection_name, load_collection
from lsr.data.qrels import Qrels, load_qrels, write_qrels
from lsr.data.runs import Run, iter_run_rows, read_run, run_description, write_run
from lsr.data.topics import load_topics
from lsr.data.vectors import SparseVectors, read_vectors_jsonl, write_vectors_jsonl

__all__ = [
    "ALIASES",
    "IGNORE_IDENTICAL_IDS",
    "RELEVANCE_LEVELS",
    "Collection",
    "Document",
    "Qrels",
    "Query",
    "Run",
    "SparseVectors",
    "collection_name",
    "iter_corpus",
    "iter_run_rows",
    "load_collection",
    "load_corpus",
    "load_qrels",
    "load_queries",
    "load_topics",
    "read_run",
    "read_vectors_jsonl",
    "resolve_dataset",
    "run_description",
    "write_qrels",
    "write_run",
    "write_vectors_jsonl",
]
