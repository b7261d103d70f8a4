"""Training data for `lsr train`: (query, positive document) pairs from three sources, and the
query split that keeps evaluation queries out of training.

- a JSONL file of ``{"query": ..., "positive": ...}`` (texts; optional ``"positive_id"``);
- a collection's qrels and corpus (every judged relevant pair of the chosen queries);
- a corpus's title -> text pairs (documents with both; the title is the query).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lsr.data import Document, iter_corpus, load_collection, resolve_dataset
from lsr.data.files import iter_jsonl
from lsr.errors import DataError

HALVES = ("first", "second")


@dataclass(frozen=True)
class Pair:
    """One training example: a query text and a relevant document (its id when it is in the corpus)."""

    query: str
    positive: str
    positive_id: str | None = None
    query_id: str | None = None


def query_half(query_id: str, half: str) -> bool:
    """Whether ``query_id`` falls in ``half`` (``first``/``second``) of a fixed, content-free split
    (a hash of the id): train on one half, report the other, and the halves never mix."""
    if half not in HALVES:
        raise ValueError(f"query half must be one of {HALVES}, got {half!r}")
    first = hashlib.sha256(query_id.encode("utf-8")).digest()[0] % 2 == 0
    return first == (half == "first")


def pairs_from_file(path: str | os.PathLike) -> list[Pair]:
    pairs = []
    for n, obj in iter_jsonl(Path(path)):
        if not isinstance(obj, dict) or not isinstance(obj.get("query"), str) or not isinstance(obj.get("positive"), str):
            raise DataError(f"{path}: line {n}: expected {{\"query\": text, \"positive\": text}}")
        pairs.append(Pair(obj["query"], obj["positive"], obj.get("positive_id")))
    return pairs


def pairs_from_qrels(dataset: str, *, split: str | None = None, half: str | None = None) -> list[Pair]:
    """Every (query, relevant document) pair of ``dataset``'s qrels; with ``half``, only the
    queries of that half (:func:`query_half`)."""
    collection = load_collection(dataset, split)
    if collection.corpus is None:
        raise DataError(f"{dataset}: training on qrels needs the corpus")
    docs = {d.id: d for d in iter_corpus(collection.corpus)}
    pairs = []
    for q in collection.queries:
        if half is not None and not query_half(q.id, half):
            continue
        for doc_id, rel in collection.qrels.judgments.get(q.id, {}).items():
            if rel >= collection.relevance_level and doc_id in docs:
                pairs.append(Pair(q.text, docs[doc_id].contents, doc_id, q.id))
    return pairs


def pairs_from_titles(corpus: str | os.PathLike) -> list[Pair]:
    """Title -> text pairs of a corpus (documents that have both)."""
    return [Pair(d.title, d.text, d.id) for d in iter_corpus(resolve_dataset(corpus)) if d.title.strip() and d.text.strip()]


def corpus_documents(corpus: str | os.PathLike) -> Sequence[Document]:
    return list(iter_corpus(resolve_dataset(corpus)))
