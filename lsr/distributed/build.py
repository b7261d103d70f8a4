"""Building a sharded index: encode the corpus (in this process, or in Ray actors each holding
the model), route every document to the shard its id hashes to, and write each shard as a
collection (in this process, or one Ray task per shard), then the manifest.

The whole layout is written into a temporary sibling directory and swapped in at once
(:func:`lsr.index.storage.replace_dir`), so an interrupted build leaves what was there before.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lsr.data import Document, SparseVectors, iter_corpus, read_vectors_jsonl, resolve_dataset
from lsr.distributed.cluster import connect
from lsr.distributed.layout import ROUTING, shard_name, shard_of, write_manifest
from lsr.encoders.models import DEFAULT_SPLADE
from lsr.encoders.registry import load_encoder
from lsr.errors import DataError
from lsr.index import SparseIndex, storage
from lsr.index.approx import ApproxSettings
from lsr.index.dense import add_dense
from lsr.pipeline import encode_corpus, encode_dense_corpus
from lsr.retrieval.collection import Collection
from lsr.util import dir_bytes

CHUNK = 256  # documents per encoding call on a Ray worker: large enough to batch, small enough to balance


def build_sharded(
    out: str | os.PathLike,
    shards: int,
    *,
    corpus: str | os.PathLike | None = None,
    vectors: str | os.PathLike | None = None,
    model: str | None = DEFAULT_SPLADE,
    encoder_options: Mapping[str, Any] | None = None,
    quantization: str = "u16",
    block_size: int = 32,
    reorder: str = "none",
    batch_size: int | None = None,
    show_progress_bar: bool = True,
    dense_model: str | None = None,
    dense_options: Mapping[str, Any] | None = None,
    approx: bool | ApproxSettings = False,
    ray: str | None = None,
    workers: int | None = None,
    query: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Encode ``corpus`` with ``model`` (or read ``vectors``) and write ``shards`` collections and
    their manifest at ``out`` (see :mod:`lsr.distributed.layout`); returns a build summary.

    ``ray`` (``local``, ``auto`` or a cluster address; None: everything in this process) runs
    the encoding on ``workers`` Ray actors (default: one per CPU of the cluster), each holding
    the model on one thread, and writes the shards in parallel Ray tasks. A model whose document
    weights depend on the whole collection (BM25) is weighed here, once, against the whole
    corpus, so that every shard scores with the global statistics. The other options are those
    of :func:`lsr.pipeline.build_index` (``query``: the collections' text-query settings).
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be a positive integer, got {shards!r}")
    if (corpus is None) == (vectors is None):
        raise ValueError("give exactly one of corpus or vectors")
    if dense_model is not None and corpus is None:
        raise ValueError("a dense part is encoded from the corpus: give corpus, not vectors")
    if vectors is None and model is None:
        raise ValueError("encoding a corpus needs a model")
    ray_mod = connect(ray) if ray is not None else None
    t0 = time.perf_counter()
    settings, lengths, growing = dict(encoder_options or {}), None, True
    if vectors is not None:
        ids, vecs = read_vectors_jsonl(vectors)
        docs = [Document(d) for d in ids]
    else:
        encoder = load_encoder(model, **settings)
        settings, growing = encoder.settings(), not encoder.per_document
        if ray_mod is not None and encoder.per_document:
            docs = list(iter_corpus(resolve_dataset(corpus)))
            if any(d.vector is not None for d in docs):
                raise DataError(f"{corpus}: documents with a 'vector' go through --vectors, not through a model")
            workers = workers or max(1, int(ray_mod.cluster_resources().get("CPU", 1)))
            vecs = encode_on_ray(ray_mod, [d.contents for d in docs], model, settings, encoder.vocab, workers, batch_size,
                                     show_progress_bar)
        else:
            docs, vecs = encode_corpus(corpus, encoder, batch_size=batch_size, show_progress_bar=show_progress_bar)
            workers = None
        ids = [d.id for d in docs]
        lengths = getattr(encoder, "lengths", None)
    if not docs:
        raise DataError(f"{corpus or vectors}: no documents to index")
    encode_seconds = time.perf_counter() - t0
    dense = None
    if dense_model is not None:
        _, dense_vectors, dense_settings = encode_dense_corpus(corpus, dense_model, batch_size=batch_size, show_progress_bar=show_progress_bar)
        dense = {"model": dense_model, "settings": dense_settings, "options": dict(dense_options or {})}
    owner = np.array([shard_of(d, shards) for d in ids], dtype=np.int64)
    members = [np.flatnonzero(owner == s) for s in range(shards)]
    empty = [shard_name(s) for s, m in enumerate(members) if not len(m)]
    if empty:
        raise DataError(f"{len(ids)} documents leave {', '.join(empty)} empty: use fewer than {shards} shards")
    options = {"quantization": quantization, "block_size": block_size, "reorder": reorder, "model": model,
               "encoder_settings": settings, "approx": approx,
               "max_weight": float(vecs.values.max()) if vecs.nnz else None}  # one quantization step for all shards

    def fill(tmp: Path) -> None:
        jobs = []
        for s, rows in enumerate(members):
            part = (tmp / shard_name(s), vecs.take(rows), [ids[r] for r in rows], [docs[r] for r in rows], rows,
                    None if lengths is None else np.asarray(lengths)[rows], growing, options,
                    None if dense is None else {**dense, "vectors": dense_vectors[rows]}, query)
            jobs.append(_remote_write(ray_mod).remote(*part) if ray_mod is not None else part)
        entries = []
        with tqdm(total=shards, desc="writing shards", unit="shard", disable=not show_progress_bar, file=sys.stderr) as bar:
            pending = list(jobs)
            while pending:
                if ray_mod is None:
                    entries.append(write_shard(*pending.pop(0)))
                else:
                    done, pending = ray_mod.wait(pending, num_returns=1)
                    entries.append(ray_mod.get(done[0]))
                bar.update(1)
        entries.sort(key=lambda e: e["name"])
        write_manifest(tmp, entries, {
            "model": model, "encoder": settings, "growing_vocab": growing, "vocab_size": len(vecs.vocab),
            "settings": {k: options[k] for k in ("quantization", "block_size", "reorder", "max_weight")},
            "approx": bool(approx), "dense": None if dense is None else {"model": dense_model, "options": dense["options"]},
            "build": {"ray": ray, "workers": workers, "encode_seconds": round(encode_seconds, 3)},
        })

    t1 = time.perf_counter()
    storage.replace_dir(out, fill)
    t2 = time.perf_counter()
    return {
        "path": str(out), "model": model, "shards": shards, "num_docs": len(ids),
        "docs_per_shard": [int(len(m)) for m in members], "routing": ROUTING, "ray": ray, "workers": workers,
        "encode_seconds": round(encode_seconds, 2),
        "docs_per_second": round(len(ids) / encode_seconds, 1) if vectors is None and encode_seconds > 0 else None,
        "index_seconds": round(t2 - t1, 2), "bytes": dir_bytes(out),
    }


def write_shard(path: Path, vectors: SparseVectors, ids: list[str], docs: list[Document], positions: np.ndarray,
                lengths: np.ndarray | None, growing: bool, options: Mapping[str, Any],
                dense: Mapping[str, Any] | None, query: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One shard's collection at ``path`` and its rows' corpus positions beside it; its manifest entry."""
    index = SparseIndex.build(vectors, ids, **options)
    if dense is not None:
        add_dense(index, dense["vectors"], ids, model=dense["model"], encoder_settings=dense["settings"], **dense["options"])
    Collection.build(path, index, docs, growing_vocab=growing, approx=options["approx"], lengths=lengths, query=query,
                     dense=None if dense is None else {"model": dense["model"], "options": dense["options"]})
    with Collection.open(path) as collection:
        segment = collection.store.latest_commit()["segments"][0]["name"]
    by_id = dict(zip(ids, np.asarray(positions, dtype=np.int64).tolist()))
    rows = np.array([by_id[d] for d in index.doc_ids], dtype=np.int64)  # reordering may permute rows
    positions_file = path.with_name(path.name + ".positions.npy")
    storage.replace_file(positions_file, lambda f: np.save(f, rows))
    return {"name": path.name, "docs": len(ids), "segment": segment, "positions": positions_file.name, "bytes": dir_bytes(path)}


def _remote_write(ray: Any) -> Any:
    return ray.remote(num_cpus=1)(write_shard)


class EncodeWorker:
    """A Ray actor holding a model: documents in, sparse rows out (on the threads it was given)."""

    def __init__(self, model: str, settings: Mapping[str, Any], threads: int = 1) -> None:
        import torch

        self.encoder = load_encoder(model, **settings)
        torch.set_num_threads(threads)

    def ready(self) -> bool:
        return True

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = self.encoder.encode_documents(list(texts), batch_size=batch_size, show_progress_bar=False)
        return v.indptr, v.indices, v.values


def encode_on_ray(ray: Any, texts: Sequence[str], model: str, settings: Mapping[str, Any], vocab: Sequence[str],
                  workers: int, batch_size: int | None = None, show_progress_bar: bool = True,
                  timings: dict[str, float] | None = None) -> SparseVectors:
    """``texts`` encoded by ``workers`` Ray actors (one CPU, one thread each), in input order;
    ``timings`` (if given) gets the seconds the actors took to start (model loaded) and to encode."""
    from ray.util import ActorPool

    t0 = time.perf_counter()
    actor = ray.remote(num_cpus=1)(EncodeWorker)
    actors = [actor.remote(model, dict(settings)) for _ in range(workers)]
    ray.get([a.ready.remote() for a in actors])
    t1 = time.perf_counter()
    pool = ActorPool(actors)
    chunks = [texts[i:i + CHUNK] for i in range(0, len(texts), CHUNK)]
    parts = []
    with tqdm(total=len(texts), desc=f"encoding on {workers} Ray worker(s)", unit="doc", disable=not show_progress_bar,
              file=sys.stderr) as bar:
        for chunk, (indptr, indices, values) in zip(chunks, pool.map(lambda a, c: a.encode.remote(c, batch_size), chunks)):
            parts.append(SparseVectors(indptr, indices, values, vocab))
            bar.update(len(chunk))
    if timings is not None:
        timings.update(start_s=t1 - t0, encode_s=time.perf_counter() - t1)
    for a in actors:
        ray.kill(a)  # their models' memory
    return SparseVectors.concat(parts)
