"""Benchmark data: real SPLADE encodings of the offline collections, cached, and their statistics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsr.data import SparseVectors, load_queries, resolve_dataset
from lsr.encoders.base import Encoder
from lsr.pipeline import encode_corpus
from lsr.util import cache_dir

FULL_COLLECTIONS = ("adi", "cacm", "cranfield", "medline", "scifact", "vaswani")


@dataclass(frozen=True)
class EncodedCollection:
    doc_ids: list[str]
    docs: SparseVectors
    query_ids: list[str]
    queries: SparseVectors


def _save(path: Path, ids: list[str], v: SparseVectors) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, ids=np.array(ids, dtype=object), indptr=v.indptr, indices=v.indices, values=v.values)
    tmp.rename(path)


def _load(path: Path, vocab: list[str]) -> tuple[list[str], SparseVectors]:
    z = np.load(path, allow_pickle=True)  # our own cache file, written by _save
    return list(z["ids"]), SparseVectors(z["indptr"], z["indices"], z["values"], vocab)


def encoded_collection(name: str, encoder: Encoder) -> EncodedCollection:
    """Documents and queries of a collection encoded by ``encoder``, cached on disk by model name."""
    folder = cache_dir("vectors") / encoder.name.replace("/", "__")
    folder.mkdir(parents=True, exist_ok=True)
    docs_file, queries_file = folder / f"{name}.docs.npz", folder / f"{name}.queries.npz"
    if not docs_file.exists():
        docs, vecs = encode_corpus(name, encoder)
        ids = [d.id for d in docs]
        _save(docs_file, ids, vecs)
    if not queries_file.exists():
        queries = load_queries(resolve_dataset(name))
        _save(queries_file, [q.id for q in queries], encoder.encode_queries([q.text for q in queries]))
    doc_ids, docs = _load(docs_file, encoder.vocab)
    query_ids, queries = _load(queries_file, encoder.vocab)
    return EncodedCollection(doc_ids, docs, query_ids, queries)


def real_data(encoder: Encoder, names: tuple[str, ...] = FULL_COLLECTIONS) -> EncodedCollection:
    """Every full collection's documents and queries, concatenated (ids prefixed by collection)."""
    parts = [(n, encoded_collection(n, encoder)) for n in names]
    return EncodedCollection(
        [f"{n}/{d}" for n, c in parts for d in c.doc_ids],
        SparseVectors.concat([c.docs for _, c in parts]),
        [f"{n}/{q}" for n, c in parts for q in c.query_ids],
        SparseVectors.concat([c.queries for _, c in parts]),
    )


def vector_stats(v: SparseVectors) -> dict[str, float]:
    """What the synthetic generator must preserve: length, term spread, weights, co-occurrence."""
    lengths = np.diff(v.indptr)
    df = np.bincount(v.indices, minlength=len(v.vocab))
    df_sorted = np.sort(df[df > 0])[::-1]
    n = len(v)
    return {
        "docs": n,
        "nnz_per_doc_mean": float(lengths.mean()),
        "nnz_per_doc_p50": float(np.percentile(lengths, 50)),
        "nnz_per_doc_p99": float(np.percentile(lengths, 99)),
        "distinct_terms": int((df > 0).sum()),
        "df_top10_mean_fraction": float(df_sorted[:10].mean() / n),
        "df_top1000_share_of_postings": float(df_sorted[:1000].sum() / df_sorted.sum()),
        "weight_mean": float(v.values.mean()),
        "weight_p50": float(np.percentile(v.values, 50)),
        "weight_p99": float(np.percentile(v.values, 99)),
        "weight_max": float(v.values.max()),
        "cooccurrence_jaccard_of_docs_sharing_top_term": _cooccurrence(v),
    }


def _cooccurrence(v: SparseVectors, pairs: int = 2000, seed: int = 0) -> float:
    """Mean Jaccard similarity of random doc pairs that share their heaviest term."""
    rng = np.random.default_rng(seed)
    top = np.array([v.row(i)[0][np.argmax(v.row(i)[1])] if v.indptr[i + 1] > v.indptr[i] else -1 for i in range(len(v))])
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(top):
        if t >= 0:
            groups.setdefault(int(t), []).append(i)
    multi = [g for g in groups.values() if len(g) > 1]
    if not multi:
        return 0.0
    sims = []
    for _ in range(pairs):
        g = multi[rng.integers(len(multi))]
        a, b = rng.choice(g, 2, replace=False)
        sa, sb = set(v.row(a)[0].tolist()), set(v.row(b)[0].tolist())
        sims.append(len(sa & sb) / len(sa | sb))
    return float(np.mean(sims))


def synthetic_data(real: EncodedCollection, n_docs: int, seed: int = 0) -> EncodedCollection:
    """``n_docs`` synthetic documents grown from ``real`` (lsr.bench.synth), with real's queries.

    Cached on disk (a million documents take minutes to generate), next to the real encodings.
    """
    from lsr.bench.synth import synthesize

    path = cache_dir("synth") / f"synth-{n_docs}-seed{seed}-{len(real.docs)}.npz"
    ids = [f"s{i}" for i in range(n_docs)]
    if path.exists():
        _, docs = _load(path, list(real.docs.vocab))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        docs = synthesize(real.docs, n_docs, seed=seed)
        _save(path, ids, docs)
    return EncodedCollection(ids, docs, real.query_ids, real.queries)
