"""gcide (126,240 dictionary entries) queried with MS MARCO dev-small: the larger real workloads
of `lsr bench exact`, as splade-tiny vectors and as BM25 impacts, cached on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lsr.bench.data import EncodedCollection, _load, _save
from lsr.data import SparseVectors, load_queries, resolve_dataset
from lsr.encoders.base import Encoder
from lsr.pipeline import encode_corpus
from lsr.util import cache_dir

QUERIES = "msmarco-passage/queries.dev-small.jsonl"


def _query_file() -> Path:
    return resolve_dataset("msmarco-passage") / "queries.dev-small.jsonl"


def splade_gcide(encoder: Encoder) -> EncodedCollection:
    """gcide encoded by ``encoder``: reuses a ``gcide.docs.npz`` any run cached for the same model
    (``~/.cache/lsr/vectors/<model>*/``), else encodes and caches it; queries likewise."""
    root = cache_dir("vectors")
    found = sorted(root.glob(f"{encoder.name}*/gcide.docs.npz"))
    docs_file = found[0] if found else root / encoder.name / "gcide.docs.npz"
    if not docs_file.exists():
        docs_file.parent.mkdir(parents=True, exist_ok=True)
        docs, vecs = encode_corpus("gcide", encoder)
        _save(docs_file, [d.id for d in docs], vecs)
    queries_file = root / encoder.name / "msmarco-dev-small.queries.npz"
    if not queries_file.exists():
        queries = load_queries(_query_file())
        queries_file.parent.mkdir(parents=True, exist_ok=True)
        _save(queries_file, [q.id for q in queries], encoder.encode_queries([q.text for q in queries]))
    doc_ids, docs = _load(docs_file, encoder.vocab)
    query_ids, queries = _load(queries_file, encoder.vocab)
    return EncodedCollection(doc_ids, docs, query_ids, queries)


def bm25_gcide() -> tuple[EncodedCollection, list[str]]:
    """gcide as this project's BM25 impacts (k1 0.9, b 0.4, Lucene's analyzer) and the MS MARCO
    dev-small queries as term counts over its vocabulary; also the query texts (for anchors
    that analyze text themselves)."""
    from lsr.encoders.bm25 import BM25Encoder

    folder = cache_dir("vectors") / "bm25"
    folder.mkdir(parents=True, exist_ok=True)
    docs_file, queries_file, vocab_file = folder / "gcide.docs.npz", folder / "msmarco-dev-small.queries.npz", folder / "gcide.vocab.json"
    queries = load_queries(_query_file())
    if not (docs_file.exists() and vocab_file.exists()):
        encoder = BM25Encoder()
        docs, vecs = encode_corpus("gcide", encoder, show_progress_bar=False)
        vocab_file.write_text(json.dumps(encoder.vocab))
        _save(docs_file, [d.id for d in docs], vecs)
    vocab = json.loads(vocab_file.read_text())
    if not queries_file.exists():
        encoder = BM25Encoder(vocab=vocab)
        _save(queries_file, [q.id for q in queries], encoder.encode_queries([q.text for q in queries]))
    doc_ids, docs = _load(docs_file, vocab)
    query_ids, qv = _load(queries_file, vocab)
    return EncodedCollection(doc_ids, docs, query_ids, qv), [q.text for q in queries]
