"""Build one system's index in a child process, so its wall time and peak memory are its own.

Usage: python -m lsr.bench.build_child {lsr,bmp} DOCS.npz OUT [options]. The child prints its
peak resident memory (VmHWM, which exec resets, unlike rusage's maxrss that keeps the forking
parent's size) as its last line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lsr.data import SparseVectors


def load_docs(path: str) -> tuple[list[str], SparseVectors]:
    z = np.load(path, allow_pickle=True)  # written by the benchmark itself
    vocab = json.loads(str(z["vocab"]))
    return list(z["ids"]), SparseVectors(z["indptr"], z["indices"], z["values"], vocab)


def build_lsr(docs: str, out: str, block_size: int, reorder: str, quantization: str) -> None:
    from lsr.index import Index

    ids, vecs = load_docs(docs)
    Index.build(vecs, ids, quantization=quantization, block_size=block_size, reorder=reorder).save(out)


def build_bmp(docs: str, out: str, block_size: int, same_as: str) -> None:
    """A bmp index over exactly the impacts (u8) and document order of the lsr index ``same_as``."""
    import bmp

    from lsr.index import Index

    ref = Index.load(same_as)
    if ref.postings_impacts.dtype != np.uint8:
        raise SystemExit("the reference lsr index must use u8 impacts (bmp stores u8; larger values wrap)")
    fwd_indptr, fwd_terms = ref.forward_indptr, ref.forward_terms
    impacts = np.clip(np.rint(np.asarray(ref.forward_weights, dtype=np.float64) / ref.scale), 0, 255).astype(np.int64)
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("system", choices=["lsr", "bmp"])
    p.add_argument("docs")
    p.add_argument("out")
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--reorder", default="none")
    p.add_argument("--quantization", default="u8")
    p.add_argument("--same-as", help="bmp: the lsr index whose impacts and doc order to copy")
    a = p.parse_args()
    if a.system == "lsr":
        build_lsr(a.docs, a.out, a.block_size, a.reorder, a.quantization)
    else:
        build_bmp(a.docs, a.out, a.block_size, a.same_as)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
