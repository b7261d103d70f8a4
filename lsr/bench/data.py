"""Benchmark data: real SPLADE encodings of the offline collections, cached, and their statistics."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsr.data import SparseVectors, load_queries, resolve_dataset
from lsr.encoders.base import Encoder
from lsr.encoders.models import resolve_model
from lsr.pipeline import encode_corpus
from lsr.util import cache_dir

FULL_COLLECTIONS = ("adi", "cacm", "cranfield", "medline", "scifact", "vaswani")
# gcide has no queries of its own: it is queried with MS MARCO dev-small questions
QUERIES_OF = {"gcide": ("msmarco-passage", "queries.dev-small.jsonl")}


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


def encoder_fingerprint(encoder: Encoder) -> str:
    """A digest of what decides an encoder's output: its class, its settings and, when the model
    is a local folder, every file in it. A cache keyed by the model name alone served stale
    vectors once, after the model behind the name changed."""
    h = hashlib.sha256(json.dumps([type(encoder).__name__, encoder.name, encoder.settings()], sort_keys=True).encode())
    folder = Path(resolve_model(encoder.name))
    if folder.is_dir():
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            h.update(f.relative_to(folder).as_posix().encode())
            with open(f, "rb") as fh:
                h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()[:16]


def encoded_collection(name: str, encoder: Encoder) -> EncodedCollection:
    """Documents and queries of a collection encoded by ``encoder``, cached on disk under the
    encoder's fingerprint (see :func:`encoder_fingerprint`)."""
    folder = cache_dir("vectors") / f"{encoder.name.replace('/', '__')}-{encoder_fingerprint(encoder)}"
    folder.mkdir(parents=True, exist_ok=True)
    docs_file, queries_file = folder / f"{name}.docs.npz", folder / f"{name}.queries.npz"
    if not docs_file.exists() and not _adopt_unkeyed(folder.parent / encoder.name.replace("/", "__"), name, encoder, folder):
        docs, vecs = encode_corpus(name, encoder)
        ids = [d.id for d in docs]
        _save(docs_file, ids, vecs)
    if not queries_file.exists():
        queries = _queries(name)
        _save(queries_file, [q.id for q in queries], encoder.encode_queries([q.text for q in queries]))
    doc_ids, docs = _load(docs_file, encoder.vocab)
    query_ids, queries = _load(queries_file, encoder.vocab)
    return EncodedCollection(doc_ids, docs, query_ids, queries)


def _queries(name: str) -> list:
    source, file = QUERIES_OF.get(name, (name, None))
    folder = resolve_dataset(source)
    return load_queries(folder / file if file else folder)


def _adopt_unkeyed(old: Path, name: str, encoder: Encoder, folder: Path, sample: int = 64) -> bool:
    """Copy a cache written before fingerprints (keyed by model name only) under ``folder`` if
    a fresh encoding of a sample of its documents and queries matches it; else leave it."""
    from lsr.data import iter_corpus

    files = [old / f"{name}.docs.npz", old / f"{name}.queries.npz"]
    if not all(f.exists() for f in files):
        return False
    docs = list(iter_corpus(resolve_dataset(name)))
    if _load(files[0], encoder.vocab)[0] != [d.id for d in docs]:
        return False
    queries = [q.text for q in _queries(name)]
    for texts, path, encode in ((docs, files[0], encoder.encode_documents), (queries, files[1], encoder.encode_queries)):
        cached = _load(path, encoder.vocab)[1]
        picked = list(range(0, len(texts), max(1, len(texts) // sample)))[:sample]
        fresh = encode([texts[i].contents if texts is docs else texts[i] for i in picked], show_progress_bar=False)
        for row, i in enumerate(picked):  # batch shapes move float rounding: equal up to that
            a, b = np.zeros(len(encoder.vocab)), np.zeros(len(encoder.vocab))
            a[fresh.row(row)[0]], b[cached.row(i)[0]] = fresh.row(row)[1], cached.row(i)[1]
            if not np.allclose(a, b, rtol=1e-3, atol=1e-4):
                return False
    for f in files:  # copied: older checkouts still read the unkeyed cache
        shutil.copyfile(f, folder / f".{f.name}.tmp")
        (folder / f".{f.name}.tmp").rename(folder / f.name)
    return True


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
