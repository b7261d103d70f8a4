"""PISA through pyterrier-pisa, as a benchmark anchor (the `bench` extra; no JVM).

Its learned-sparse path indexes ``{term: weight}`` dicts, keeping ``int(weight x scale)`` as
each posting's impact (truncation, so its top-k is not exact on the float weights: the
benchmark measures its recall against them), and scores a query's weights against those
impacts with the query algorithm asked for (maxscore, block_max_wand...).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lsr.data import SparseVectors

IMPACT_MAX = 255  # the largest weight becomes this impact: the precision bmp and Lucene get too


def pisa_system(index, work: Path) -> tuple[dict, Callable[[str], Callable[[SparseVectors, int], list[str]]]]:
    """Index ``index``'s float forward weights (document order and ids kept) with PISA; returns
    (build facts, a factory: query algorithm -> search function)."""
    from pyterrier_pisa import PisaIndex, _pisathon
    from pyterrier_pisa import PisaRetrieve

    weights = np.asarray(index.forward_weights, dtype=np.float64)
    scale = IMPACT_MAX / float(weights.max()) if weights.size else 1.0
    vocab, indptr, terms = index.vocab, index.forward_indptr, index.forward_terms

    def docs():
        for d, doc_id in enumerate(index.doc_ids):
            lo, hi = indptr[d], indptr[d + 1]
            yield {"docno": doc_id, "toks": {vocab[t]: float(w) for t, w in zip(terms[lo:hi], weights[lo:hi])}}

    path = work / "pisa"
    start = time.perf_counter()
    pisa = PisaIndex(str(path), stemmer="none", threads=1)
    pisa.toks_indexer(scale=scale).index(docs())
    build = {"seconds": time.perf_counter() - start, "bytes": sum(p.stat().st_size for p in path.rglob("*") if p.is_file()),
             "impact_scale": scale}

    def searcher(algorithm: str) -> Callable[[SparseVectors, int], list[str]]:
        retrievers: dict[int, PisaRetrieve] = {}

        def search(q: SparseVectors, k: int) -> list[str]:
            r = retrievers.get(k)
            if r is None:
                r = retrievers[k] = pisa.quantized(num_results=k, query_algorithm=algorithm, threads=1)
                r.reset_retrieval_context()
                r.out = tuple(np.empty(k, dtype=dt) for dt in (np.int32, object, np.int32, np.float32))
            t, w = q.row(0)
            if not len(t):
                return []
            toks = {vocab[a]: float(b) * r.toks_scale for a, b in zip(t, w)}
            qidx, docnos, ranks, scores = r.out
            n = _pisathon.retrieve(r._ctxt, r.query_algorithm.value, [(0, toks)], k=k, threads=1, query_weighted=1,
                                   pretokenised=True, result_qidxs=qidx, result_docnos=docnos, result_ranks=ranks,
                                   result_scores=scores)
            return list(docnos[:n])

        return search

    return build, searcher
