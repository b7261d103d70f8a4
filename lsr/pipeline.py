"""The one corpus -> collection pipeline, for any encoder: the CLI, the quickstart and the
evaluation harness all build through :func:`build_index`.

It sits above the retrieval layer: what it writes is a collection (one segment, the documents'
texts and metadata stored), which a Retriever searches and ``lsr add`` grows.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lsr.data import Document, SparseVectors, iter_corpus, resolve_dataset
from lsr.data.ciff import read_ciff
from lsr.data.vectors import read_vector_records
from lsr.encoders.base import Encoder
from lsr.encoders.models import DEFAULT_SPLADE
from lsr.encoders.registry import load_encoder
from lsr.index import SparseIndex
from lsr.index.approx import ApproxSettings
from lsr.index.build import raised_warning
from lsr.index.dense import add_dense
from lsr.errors import DataError
from lsr.retrieval import Retriever
from lsr.retrieval.collection import Collection, query_defaults
from lsr.util import dir_bytes


def encode_corpus(corpus: str | os.PathLike, encoder: Encoder, *, batch_size: int | None = None,
                  show_progress_bar: bool = True) -> tuple[list[Document], SparseVectors]:
    """Documents and vectors of a collection (a name, a folder or a corpus.jsonl); documents
    that carry a ``vector`` keep it. The whole corpus is validated before encoding starts,
    so a bad line fails fast."""
    docs = list(iter_corpus(resolve_dataset(corpus)))
    if any(d.vector is not None for d in docs):
        raise DataError(f"{corpus}: documents with a 'vector' go through `lsr index --vectors`, not through a model")
    vectors = encoder.encode_documents([d.contents for d in docs], batch_size=batch_size, show_progress_bar=show_progress_bar)
    return docs, vectors


def encode_dense_corpus(
    corpus: str | os.PathLike, model: str, *, cache: str | os.PathLike | None = None, batch_size: int | None = None, show_progress_bar: bool = True
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Ids, dense vectors and encoder settings of a collection.

    With ``cache`` (an ``.npz`` path) the vectors are read from it when it holds the same
    documents encoded with the same settings, and written to it otherwise: dense encoding is
    the slow step of a dense index, and evaluations rebuild indexes often.
    """
    docs = list(iter_corpus(resolve_dataset(corpus)))
    ids = [d.id for d in docs]
    encoder = load_encoder(model, dense=True)
    settings = {**encoder.settings(), "model": model}
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as z:
            if list(z["ids"]) == ids and json.loads(str(z["settings"])) == settings:
                return ids, z["vectors"], encoder.settings()
    vectors = encoder.encode_documents([d.contents for d in docs], batch_size=batch_size, show_progress_bar=show_progress_bar)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(cache).with_name(Path(cache).name + ".tmp.npz")
        np.savez(tmp, ids=np.array(ids, dtype=str), vectors=vectors, settings=json.dumps(settings))
        tmp.rename(cache)
    return ids, vectors, encoder.settings()


def add_dense_from_corpus(
    index: SparseIndex,
    corpus: str | os.PathLike,
    model: str,
    *,
    options: Mapping[str, Any] | None = None,
    cache: str | os.PathLike | None = None,
    batch_size: int | None = None,
    show_progress_bar: bool = True,
) -> float:
    """Encode ``corpus`` with the dense ``model`` and give ``index`` a dense part (not saved);
    returns the seconds it took. ``options`` go to :meth:`lsr.index.dense.DenseIndex.build`."""
    start = time.perf_counter()
    ids, vectors, settings = encode_dense_corpus(corpus, model, cache=cache, batch_size=batch_size, show_progress_bar=show_progress_bar)
    add_dense(index, vectors, ids, model=model, encoder_settings=settings, **(options or {}))
    return round(time.perf_counter() - start, 2)


def build_index(
    out: str | os.PathLike | None,
    *,
    corpus: str | os.PathLike | None = None,
    vectors: str | os.PathLike | None = None,
    ciff: str | os.PathLike | None = None,
    model: str | None = DEFAULT_SPLADE,
    encoder_options: Mapping[str, Any] | None = None,
    quantization: str = "u16",
    block_size: int = 32,
    reorder: str = "none",
    batch_size: int | None = None,
    show_progress_bar: bool = True,
    dense_model: str | None = None,
    dense_options: Mapping[str, Any] | None = None,
    dense_cache: str | os.PathLike | None = None,
    approx: bool | ApproxSettings = False,
    query: Mapping[str, Any] | None = None,
) -> tuple[Retriever, dict]:
    """Encode ``corpus`` with ``model`` (any encoder :func:`load_encoder` knows: a SPLADE model,
    ``bm25``...; ``encoder_options`` configure it), or read precomputed ``vectors``, and save
    a one-segment collection at ``out`` (replacing what is there; nothing is saved when None).

    With ``vectors``, ``model`` (None for none) is recorded as the query encoder, so that a
    corpus encoded elsewhere can be searched by text. ``ciff`` imports a CIFF file instead: its
    integer impacts times the scale an lsr export recorded (1 for other writers) are the weights,
    and ``model`` defaults to the query encoder that export recorded. ``dense_model`` also encodes the corpus
    with that dense model and stores a faiss index beside the sparse one (``dense_options`` go
    to :meth:`lsr.index.dense.DenseIndex.build`; ``dense_cache`` see
    :func:`encode_dense_corpus`); ``approx`` builds the structure of ``mode="approx"``; ``query``
    records how text queries are encoded by default (:func:`lsr.retrieval.collection.query_defaults`).
    Returns a Retriever over it (a collection when saved) and a build summary (documents,
    empty documents, timings).
    """
    if dense_model is not None and corpus is None:
        raise ValueError("a dense part is encoded from the corpus: give corpus, not vectors")
    if sum(source is not None for source in (corpus, vectors, ciff)) != 1:
        raise ValueError("give exactly one of corpus, vectors or ciff")
    query = query_defaults(query, model)  # a bad setting fails before any encoding
    t0 = time.perf_counter()
    settings = dict(encoder_options or {})
    lengths = None
    if vectors is not None:
        ids, texts, vecs = read_vector_records(vectors)
        docs = [Document(d, text=t) for d, t in zip(ids, texts)]
        encoder = None
    elif ciff is not None:
        found = read_ciff(ciff)
        meta = found.header.meta
        scale = np.float32(meta.get("scale", 1.0))
        ids, docs, encoder = found.doc_ids, [Document(d) for d in found.doc_ids], None
        vecs = SparseVectors(found.tfs.indptr, found.tfs.indices, found.tfs.values * scale, found.tfs.vocab)
        if model is None and meta.get("model"):
            model, settings = meta["model"], {**settings, **meta.get("encoder", {})}
    else:
        if model is None:
            raise ValueError("encoding a corpus needs a model")
        encoder = load_encoder(model, **settings)
        docs, vecs = encode_corpus(corpus, encoder, batch_size=batch_size, show_progress_bar=show_progress_bar)
        ids = [d.id for d in docs]
        settings = encoder.settings()
        lengths = getattr(encoder, "lengths", None)
    if not docs:
        raise DataError(f"{corpus or vectors or ciff}: no documents to index")
    t1 = time.perf_counter()
    index = SparseIndex.build(
        vecs, ids, quantization=quantization, block_size=block_size, reorder=reorder, model=model,
        encoder_settings=settings, approx=approx,
    )
    index.manifest["stats"]["encode_seconds"] = round(t1 - t0, 3)
    dense_seconds = None
    if dense_model is not None:
        dense_seconds = add_dense_from_corpus(
            index, corpus, dense_model, options=dense_options, cache=dense_cache, batch_size=batch_size, show_progress_bar=show_progress_bar
        )
    if out is not None:
        growing = encoder is None or not encoder.per_document
        Collection.build(out, index, docs, growing_vocab=growing, approx=approx, lengths=lengths, query=query,
                         dense={"model": dense_model, "options": dict(dense_options or {})} if dense_model else None)
        retriever = Retriever(Collection.open(out), encoder=encoder if encoder is not None and encoder.per_document else None)
    else:
        index.manifest["query"] = query
        retriever = Retriever(index, encoder=encoder if encoder is not None and encoder.per_document else None)
    t2 = time.perf_counter()
    summary = {
        "path": str(out) if out is not None else None,
        "model": model,
        **{k: index.manifest["stats"][k] for k in ("num_docs", "empty_docs", "num_postings", "raised_postings", "vocab_size")},
        "encode_seconds": round(t1 - t0, 2),
        "docs_per_second": round(len(ids) / (t1 - t0), 1) if corpus is not None and t1 > t0 else None,
        "index_seconds": round(t2 - t1, 2),
        "dense_seconds": dense_seconds,
        "bytes": dir_bytes(out) if out is not None else index.info()["bytes"],
        "warnings": [w for w in [raised_warning(index.manifest["stats"], quantization)] if w],
    }
    return retriever, summary
