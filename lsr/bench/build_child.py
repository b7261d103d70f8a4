"""Build one system's index in a child process, so its wall time and peak memory are its own.

Usage: python -m lsr.bench.build_child {lsr,bmp,seismic} DOCS.npz OUT [options]. The child prints its
peak resident memory (VmHWM, which exec resets, unlike rusage's maxrss that keeps the forking
parent's size) and the CPU seconds of all its threads as its last line.
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lsr.data import SparseVectors

if TYPE_CHECKING:
    from lsr.index.approx import ApproxSettings


def load_docs(path: str) -> tuple[list[str], SparseVectors]:
    z = np.load(path, allow_pickle=True)  # written by the benchmark itself
    vocab = json.loads(str(z["vocab"]))
    return list(z["ids"]), SparseVectors(z["indptr"], z["indices"], z["values"], vocab)


def build_lsr(docs: str, out: str, block_size: int, reorder: str, quantization: str, approx: "ApproxSettings | None",
              threads: int | None) -> None:
    from lsr.index import SparseIndex

    ids, vecs = load_docs(docs)
    SparseIndex.build(vecs, ids, quantization=quantization, block_size=block_size, reorder=reorder, approx=approx or False,
                      threads=threads).save(out, threads)


def build_seismic(docs: str, out: str, knobs: dict, threads: int | None) -> None:
    """A Seismic index over ``docs`` as given: the benchmark writes them already dequantized
    (:func:`dequantized`), so that this process loads neither lsr's index nor Numba, which a
    Seismic user would not pay for. Rows must ascend strictly (the benchmark writes them so);
    documents keep lsr's order and ids. Seismic writes ``out`` + ".index.seismic". Its build runs on
    its global pool of one thread per core whatever ``num_threads`` says (at 1, its CPU time is
    1.7x its wall time on 2 cores).
    """
    from lsr.util import machine_threads

    import seismic

    ids, vecs = load_docs(docs)
    dataset = seismic.SeismicDataset(dim=len(vecs.vocab))
    dataset.add_documents_by_id(ids, vecs.indices.astype(np.int64), vecs.values, vecs.indptr.astype(np.int64))
    index = seismic.SeismicIndex.build_from_dataset(
        dataset, n_postings=knobs["n_postings"], centroid_fraction=knobs["centroid_fraction"],
        summary_energy=knobs["summary_energy"], max_fraction=knobs["max_fraction"], doc_cut=knobs["doc_cut"], num_threads=threads or machine_threads(),
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    index.save(out)


def dequantized(vecs: SparseVectors) -> SparseVectors:
    """The vectors lsr scores: u8-quantized weights (at lsr's scale), as float32 again."""
    from lsr.index.build import quantization_scale, quantize

    scale = quantization_scale(float(vecs.values.max()), np.uint8)
    values = (quantize(vecs.values, scale, np.uint8) * np.float32(scale)).astype(np.float32)
    return SparseVectors(vecs.indptr, vecs.indices, values, vecs.vocab)


def build_bmp(docs: str, out: str, block_size: int, same_as: str) -> None:
    """A bmp index over the float weights and document order of the lsr index ``same_as``, rounded
    to u8 impacts (bmp stores u8; larger values wrap) with the largest weight at 255."""
    import bmp

    from lsr.index import SparseIndex
    from lsr.index.build import quantization_scale

    ref = SparseIndex.load(same_as)
    fwd_indptr, fwd_terms = ref.forward_indptr, ref.forward_terms
    weights = np.asarray(ref.forward_weights, dtype=np.float64)
    scale = quantization_scale(float(weights.max()) if weights.size else 0.0, np.uint8)
    impacts = np.clip(np.rint(weights / scale), 0, 255).astype(np.int64)
    vocab = ref.vocab
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    indexer = bmp.Indexer(out, bsize=block_size, compress_range=False)
    for d, doc_id in enumerate(ref.doc_ids):
        lo, hi = fwd_indptr[d], fwd_indptr[d + 1]
        indexer.add_document(doc_id, {vocab[t]: int(w) for t, w in zip(fwd_terms[lo:hi], impacts[lo:hi]) if w > 0})
    indexer.finish()


def peak_rss_mb() -> float:
    """This process's peak resident set size since exec, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    """User plus system CPU seconds of this process's threads so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("system", choices=["lsr", "bmp", "seismic"])
    p.add_argument("docs")
    p.add_argument("out")
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--reorder", default="none")
    p.add_argument("--quantization", default="u8")
    p.add_argument("--same-as", help="bmp: the lsr index whose impacts and doc order to copy")
    p.add_argument("--approx", help="lsr, seismic: approximate-search settings as JSON (lsr.index.approx.ApproxSettings)")
    p.add_argument("--threads", type=int, help="lsr, seismic: build threads (default: every core)")
    a = p.parse_args()
    if a.system == "lsr":
        from lsr.index.approx import ApproxSettings

        build_lsr(a.docs, a.out, a.block_size, a.reorder, a.quantization, ApproxSettings(**json.loads(a.approx)) if a.approx else None,
                  a.threads)
    elif a.system == "seismic":
        if not a.approx:
            p.error("seismic needs --approx")
        build_seismic(a.docs, a.out, json.loads(a.approx), a.threads)
    else:
        build_bmp(a.docs, a.out, a.block_size, a.same_as)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "cpu_seconds": cpu_seconds()}))


if __name__ == "__main__":
    main()
