"""A PyTerrier transformer over an lsr index, so ``pt.Experiment`` compares lsr with PyTerrier's
retrievers (PISA through pyterrier-pisa, Terrier, ...) on the same topics and qrels.

Input frames carry ``qid`` and either ``query`` (text, encoded by the index's query encoder) or
``query_toks`` (``{term: weight}``, PyTerrier's column for pre-encoded learned sparse queries, as
pyterrier-pisa and pyt_splade use); a frame with both searches by ``query_toks``. The output is
PyTerrier's ranking frame: the input columns, then ``docno``, ``score`` and ``rank`` (from 0,
best first), one row per hit. Needs ``pip install python-terrier``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pyterrier as pt

from lsr.retrieval import Retriever
from lsr.retrieval.modes import get_mode


class LsrRetriever(pt.Transformer):
    """Retrieve the top ``num_results`` documents of each query from an lsr index or collection.

    ``mode`` and ``knobs`` are those of :meth:`lsr.retrieval.Retriever.search_batch` (checked
    here, once); ``threads`` parallelizes each frame's batch.
    """

    def __init__(self, index: str | os.PathLike | Retriever, *, num_results: int = 1000, mode: str = "exact",
                 threads: int | None = None, **knobs: Any) -> None:
        self.retriever = index if isinstance(index, Retriever) else Retriever.load(index)
        get_mode(mode).check_knobs(knobs)
        self.num_results, self.mode, self.threads, self.knobs = num_results, mode, threads, knobs

    def __repr__(self) -> str:
        return f"LsrRetriever({self.retriever.path or 'in memory'}, mode={self.mode!r}, num_results={self.num_results})"

    def transform(self, topics: pd.DataFrame) -> pd.DataFrame:
        if "qid" not in topics.columns or not ({"query", "query_toks"} & set(topics.columns)):
            raise ValueError(f"LsrRetriever needs the columns qid and query or query_toks, got {list(topics.columns)}")
        by_toks = "query_toks" in topics.columns
        queries = list(topics["query_toks" if by_toks else "query"])
        for i, q in enumerate(queries):
            if not isinstance(q, Mapping if by_toks else str):
                raise ValueError(f"row {i} (qid {topics['qid'].iloc[i]!r}): {'query_toks must be a {term: weight} dict' if by_toks else 'query must be text'}, "
                                 f"got {type(q).__name__}")
        results = self.retriever.search_batch([dict(q) if by_toks else q for q in queries], k=self.num_results, mode=self.mode,
                                              threads=self.threads, **self.knobs)
        rows = [(i, doc_id, score, rank) for i, r in enumerate(results) for rank, (doc_id, score) in enumerate(zip(r.ids, r.scores))]
        hits = pd.DataFrame(rows, columns=["_row", "docno", "score", "rank"])
        carried = topics.reset_index(drop=True).drop(columns=[c for c in ("docno", "score", "rank") if c in topics.columns])
        out = carried.iloc[hits["_row"]].reset_index(drop=True)
        return pd.concat([out, hits.drop(columns="_row")], axis=1)
