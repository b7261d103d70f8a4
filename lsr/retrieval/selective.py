"""Sparse-guided selective dense search, after CluSD (Yang, Qiao, Yang; ECIR 2024).

The dense vectors are clustered at build time (:mod:`lsr.index.dense`). A query scores densely
only the documents of the clusters that hold its sparse top ``candidates`` (documents the
sparse ranking found relevant tend to sit near other relevant ones) plus the ``centroids``
clusters whose centroids are closest to the query (relevant documents the sparse side missed).
CluSD picks clusters with a learned model; this is its unlearned core. Scoring every cluster
gives exactly the full dense ranking.
"""

from __future__ import annotations

import numpy as np

from lsr.index.dense import DenseIndex


def selected_clusters(dense: DenseIndex, query: np.ndarray, sparse_rows: np.ndarray, *, candidates: int, centroids: int) -> np.ndarray:
    """Ids of the clusters to score for one query (a unit vector), ascending."""
    holding = dense.doc_cluster[np.asarray(sparse_rows[:candidates], dtype=np.int64)]
    centroids = min(centroids, dense.num_clusters)
    if centroids:
        similarity = dense.centroids @ query
        nearest = np.argpartition(-similarity, centroids - 1)[:centroids]
        holding = np.concatenate([holding, nearest])
    return np.unique(holding)


def selective_dense(
    dense: DenseIndex, query: np.ndarray, sparse_rows: np.ndarray, depth: int, *, candidates: int, centroids: int,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Top ``depth`` (rows, scores) among the selected clusters' documents (those ``allowed``,
    when given), and the fraction of the collection's dense vectors that were scored."""
    clusters = selected_clusters(dense, query, sparse_rows, candidates=candidates, centroids=centroids)
    lo, hi = dense.cluster_indptr[clusters], dense.cluster_indptr[clusters + 1]
    rows = np.concatenate([dense.cluster_docs[a:b] for a, b in zip(lo, hi)]) if len(clusters) else np.zeros(0, np.int32)
    if allowed is not None:
        rows = rows[allowed[rows]]
    scores = dense.vectors[rows] @ query
    top = min(depth, len(rows))
    best = np.argpartition(-scores, top - 1)[:top] if 0 < top < len(rows) else np.arange(len(rows))
    order = best[np.lexsort((rows[best], -scores[best]))]
    return rows[order].astype(np.int64), scores[order], len(rows) / dense.num_docs
