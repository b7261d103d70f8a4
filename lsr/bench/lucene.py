"""Lucene impact search through pyserini, as a benchmark anchor (the optional `pyserini` extra)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lsr.data import SparseVectors
from lsr.data.anserini import write_json_vectors
from lsr.evaluation.pyserini_ref import start_jvm
from lsr.index.build import quantization_scale

QUERY_SCALE = 100  # Anserini impact search takes integer query weights


def lucene_system(index, work: Path) -> tuple[dict, Callable[[SparseVectors, int], list[str]]]:
    """Index ``index``'s float weights rounded to u8 impacts (the largest weight at 255) with
    Anserini and return (build facts, search function)."""
    coll = work / "collection"
    coll.mkdir(parents=True, exist_ok=True)
    weights = np.asarray(index.forward_weights, np.float64)
    impacts = np.clip(np.rint(weights / quantization_scale(float(weights.max()) if weights.size else 0.0, np.uint8)), 0, 255)
    write_json_vectors(coll / "docs.jsonl", index.doc_ids,
                       SparseVectors(index.forward_indptr, index.forward_terms, impacts, index.vocab), scale=1)
    out = work / "index"
    start = time.perf_counter()
    code = (
        "import sys; from lsr.evaluation.pyserini_ref import start_jvm; start_jvm(); "
        "from pyserini.pyclass import autoclass; autoclass('io.anserini.index.IndexCollection').main(sys.argv[1:])"
    )
    args = ["-collection", "JsonVectorCollection", "-input", str(coll), "-index", str(out),
            "-generator", "DefaultLuceneDocumentGenerator", "-threads", "1", "-impact", "-pretokenized"]
    code += "; from lsr.bench.build_child import peak_rss_mb; print(peak_rss_mb())"
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"Anserini indexing failed: {proc.stderr[-2000:]}")
    build = {"seconds": time.perf_counter() - start, "peak_rss_mb": float(proc.stdout.strip().splitlines()[-1]),
             "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())}

    start_jvm()
    from pyserini.pyclass import autoclass
    from pyserini.search.lucene import LuceneImpactSearcher

    searcher = LuceneImpactSearcher(str(out), query_encoder=None)
    JHashMap, JInt = autoclass("java.util.HashMap"), autoclass("java.lang.Integer")
    vocab = index.vocab

    def search(q: SparseVectors, k: int) -> list[str]:
        jq = JHashMap()
        terms, weights = q.row(0)
        for t, w in zip(terms, weights):
            jq.put(vocab[t], JInt(max(1, int(round(float(w) * QUERY_SCALE)))))
        return [h.docid for h in searcher.object.search(jq, k)]

    return build, search
