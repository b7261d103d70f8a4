"""End-to-end steps shared by the CLI and the quickstart: corpus -> vectors -> index."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lsr.data import SparseVectors, iter_corpus, read_vectors_jsonl, resolve_dataset
from lsr.encoders import DEFAULT_SPLADE, SpladeEncoder
from lsr.index import Index


def encode_corpus(corpus: str | os.PathLike, encoder: SpladeEncoder, *, batch_size: int | None = None, show_progress_bar: bool = True) -> tuple[list[str], SparseVectors]:
    """Ids and document vectors of a collection (a name, a folder or a corpus.jsonl).

    The whole corpus is validated before encoding starts, so a bad line fails fast.
    """
    docs = list(iter_corpus(resolve_dataset(corpus)))
    vectors = encoder.encode_documents([d.contents for d in docs], batch_size=batch_size, show_progress_bar=show_progress_bar)
    return [d.id for d in docs], vectors


def _encoder_settings(encoder: SpladeEncoder) -> dict:
    return {"max_length": encoder.max_length, "query_max_length": encoder.query_max_length, "top_k": encoder.top_k}


def build_index(
    out: str | os.PathLike,
    *,
    corpus: str | os.PathLike | None = None,
    model: str = DEFAULT_SPLADE,
    vectors: str | os.PathLike | None = None,
    quantization: str = "u16",
    block_size: int = 32,
    reorder: str = "none",
    batch_size: int | None = None,
    max_length: int = 256,
    show_progress_bar: bool = True,
) -> tuple[Index, dict]:
    """Encode ``corpus`` with ``model`` (or read precomputed ``vectors``) and save an index at ``out``.

    Returns the index and a build summary (documents, empty documents, timings).
    """
    if (corpus is None) == (vectors is None):
        raise ValueError("give exactly one of corpus or vectors")
    t0 = time.perf_counter()
    if vectors is not None:
        ids, vecs = read_vectors_jsonl(vectors)
        model_name, settings = None, {}
    else:
        encoder = SpladeEncoder(model, max_length=max_length)
        ids, vecs = encode_corpus(corpus, encoder, batch_size=batch_size, show_progress_bar=show_progress_bar)
        model_name, settings = model, _encoder_settings(encoder)
    t1 = time.perf_counter()
    index = Index.build(
        vecs, ids, quantization=quantization, block_size=block_size, reorder=reorder, model=model_name,
        encoder_settings=settings,
    )
    path = index.save(Path(out))
    t2 = time.perf_counter()
    index.manifest["stats"]["encode_seconds"] = round(t1 - t0, 3)
    summary = {
        "path": str(path),
        **{k: index.manifest["stats"][k] for k in ("num_docs", "empty_docs", "num_postings", "vocab_size")},
        "encode_seconds": round(t1 - t0, 2),
        "docs_per_second": round(len(ids) / (t1 - t0), 1) if vectors is None and t1 > t0 else None,
        "index_seconds": round(t2 - t1, 2),
        "bytes": index.info()["bytes"],
    }
    return index, summary
