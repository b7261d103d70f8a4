"""gcide (126,240 dictionary entries) as BM25 impacts, queried with MS MARCO dev-small, cached on
disk: the `bm25-gcide` workload of `lsr bench exact` (its splade vectors come from
:func:`lsr.bench.data.encoded_collection`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lsr.bench.data import EncodedCollection, _load, _queries, _save
from lsr.pipeline import encode_corpus
from lsr.util import cache_dir

def bm25_gcide() -> tuple[EncodedCollection, list[str]]:
    """gcide as this project's BM25 impacts (k1 0.9, b 0.4, Lucene's analyzer) and the MS MARCO
    dev-small queries as term counts over its vocabulary; also the query texts (for anchors
    that analyze text themselves)."""
    from lsr.encoders.bm25 import BM25Encoder

    folder = cache_dir("vectors") / "bm25"
    folder.mkdir(parents=True, exist_ok=True)
    docs_file, queries_file, vocab_file = folder / "gcide.docs.npz", folder / "msmarco-dev-small.queries.npz", folder / "gcide.vocab.json"
    queries = _queries("gcide")
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
