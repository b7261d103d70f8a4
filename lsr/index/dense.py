"""The dense part of an index: unit vectors, a faiss index over them, and k-means clusters.

It lives in the same directory as the sparse index and is written by the same atomic save;
the model that encodes its queries is the retriever's business (the manifest names it):
every file below is an ``.npy`` array listed with its sha256 in the manifest, whose ``dense``
section records the model and settings.

- ``dense_vectors``: (documents, dim) float32, rows in the sparse index's document order,
  memory-mapped on load. With ``kind="flat"`` (the default) this *is* the index: searched by
  faiss's exhaustive inner-product kernel (``faiss.knn``) in place, without a second copy.
- ``dense_faiss``: the serialized faiss index for ``kind="hnsw"`` (``IndexHNSWFlat``; knobs
  ``hnsw_m``, ``ef_construction``, ``ef_search``) or ``kind="ivf"`` (``IndexIVFFlat``; knobs
  ``ivf_lists``, ``nprobe``), both with the inner-product metric.
- ``dense_centroids``, ``dense_cluster_indptr``, ``dense_cluster_docs``, ``dense_doc_cluster``:
  spherical k-means of the vectors (CSR: cluster -> its documents), for sparse-guided
  selective search (:mod:`lsr.retrieval.selective`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lsr.errors import DataError
from lsr.index.validate import Checker

if TYPE_CHECKING:
    from lsr.index.sparse import SparseIndex

KINDS = ("flat", "hnsw", "ivf")
_PREFIX = "dense_"
_ARRAYS = ("vectors", "centroids", "cluster_indptr", "cluster_docs", "doc_cluster")


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError("dense and hybrid search need faiss: pip install 'lsr[dense]'") from e
    return faiss


def default_clusters(num_docs: int) -> int:
    """About 2 sqrt(n) clusters: small enough that a query probes few documents, large enough
    that a cluster holds a few dozen (CluSD used 8192 for MS MARCO's 8.8M passages)."""
    return max(1, min(num_docs, math.ceil(2 * math.sqrt(num_docs))))


# The search knob each kind of dense part takes (a flat part takes neither).
KIND_KNOBS = {"hnsw": "ef_search", "ivf": "nprobe"}


@dataclass
class DenseIndex:
    """Dense vectors of an index's documents with the structures that search them."""

    vectors: np.ndarray
    centroids: np.ndarray
    cluster_indptr: np.ndarray
    cluster_docs: np.ndarray
    doc_cluster: np.ndarray
    settings: dict[str, Any]
    faiss_index: Any = None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        model: str | None,
        encoder_settings: Mapping[str, Any] | None = None,
        kind: str = "flat",
        clusters: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ivf_lists: int | None = None,
        seed: int = 0,
    ) -> "DenseIndex":
        """Index ``vectors`` (one unit row per document, in the sparse index's order).

        ``clusters`` (default :func:`default_clusters`) sets the k-means used by selective
        search; ``ivf_lists`` (default the same number) the coarse lists of ``kind="ivf"``.
        """
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or not len(vectors):
            raise DataError(f"dense vectors must be a non-empty (documents, dim) matrix, got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise DataError("dense vectors must be finite")
        if kind not in KINDS:
            raise ValueError(f"dense index kind must be one of {KINDS}, got {kind!r}")
        n, dim = vectors.shape
        n_clusters = clusters or default_clusters(n)
        if not 1 <= n_clusters <= n:
            raise ValueError(f"clusters must be in [1, {n}] (the number of documents), got {n_clusters}")
        centroids, assignment = _kmeans(vectors, n_clusters, seed)
        order = np.argsort(assignment, kind="stable")
        indptr = np.zeros(n_clusters + 1, dtype=np.int64)
        np.cumsum(np.bincount(assignment, minlength=n_clusters), out=indptr[1:])
        settings: dict[str, Any] = {"model": model, "encoder": dict(encoder_settings or {}), "dim": dim, "kind": kind,
                                    "metric": "inner_product", "clusters": n_clusters, "seed": seed}
        faiss_index = None
        if kind == "hnsw":
            faiss_index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            faiss_index.hnsw.efConstruction = ef_construction
            faiss_index.add(vectors)
            settings.update(hnsw_m=hnsw_m, ef_construction=ef_construction)
        elif kind == "ivf":
            lists = ivf_lists or n_clusters
            if not 1 <= lists <= n:
                raise ValueError(f"ivf_lists must be in [1, {n}], got {lists}")
            quantizer = faiss.IndexFlatIP(dim)
            faiss_index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
            faiss_index.cp.min_points_per_centroid = 1  # small collections: no warning, same result
            faiss_index.train(vectors)
            faiss_index.add(vectors)
            settings.update(ivf_lists=lists)
        return cls(
            vectors=vectors,
            centroids=centroids,
            cluster_indptr=indptr,
            cluster_docs=order.astype(np.int32),
            doc_cluster=assignment.astype(np.int32),
            settings=settings,
            faiss_index=faiss_index,
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The files to save, by name (without ``.npy``)."""
        out = {_PREFIX + name: getattr(self, name) for name in _ARRAYS}
        if self.faiss_index is not None:
            out[_PREFIX + "faiss"] = _faiss().serialize_index(self.faiss_index)
        return out

    @classmethod
    def load(cls, settings: Mapping[str, Any], load_array: Callable[[str], np.ndarray]) -> "DenseIndex":
        """The dense part described by a manifest's ``dense`` section; ``load_array(name)`` reads a file."""
        arrays = {name: load_array(_PREFIX + name) for name in _ARRAYS}
        faiss_index = None
        if settings["kind"] != "flat":
            faiss_index = _faiss().deserialize_index(np.asarray(load_array(_PREFIX + "faiss")))
        return cls(settings=dict(settings), faiss_index=faiss_index, **arrays)

    def validate(self, c: Checker, n_docs: int) -> None:
        """Refuse arrays that do not fit the sparse index's documents (see lsr.index.validate)."""
        dim, n_clusters = self.settings.get("dim"), self.centroids.shape[0] if self.centroids.ndim == 2 else -1
        c.array("dense_vectors", self.vectors, (np.float32,), n_docs, ndim=2)
        c.array("dense_centroids", self.centroids, (np.float32,), ndim=2)
        if self.vectors.shape[1] != dim or self.centroids.shape[1] != dim:
            c.fail(f"dense vectors or centroids are not {dim}-dimensional")
        c.pointers("dense_cluster_indptr", self.cluster_indptr, n_clusters, n_docs)
        c.array("dense_cluster_docs", self.cluster_docs, (np.int32,), n_docs)
        c.ids("dense_cluster_docs", self.cluster_docs, n_docs)
        c.array("dense_doc_cluster", self.doc_cluster, (np.int32,), n_docs)
        c.ids("dense_doc_cluster", self.doc_cluster, n_clusters)
        if self.faiss_index is not None and self.faiss_index.ntotal != n_docs:
            c.fail(f"the faiss index holds {self.faiss_index.ntotal} vectors for {n_docs} documents")

    # ---- facts --------------------------------------------------------------------------
    @property
    def num_docs(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def num_clusters(self) -> int:
        return int(self.centroids.shape[0])

    # ---- search -------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, ef_search: int | None = None, nprobe: int | None = None,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the top ``k`` documents per query, (queries, k) each; rows are -1
        past the documents found (an HNSW/IVF search can find fewer than k). ``allowed`` (bool,
        one per document) restricts the search to those documents (deletions, filters)."""
        faiss = _faiss()
        queries = self.check_queries(queries)
        kind = self.settings["kind"]
        if ef_search is not None and kind != "hnsw" or nprobe is not None and kind != "ivf":
            raise ValueError(f"ef_search applies to kind 'hnsw' and nprobe to kind 'ivf'; this dense index is {kind!r}")
        ids = None if allowed is None else np.flatnonzero(allowed).astype(np.int64)
        k = min(k, self.num_docs if ids is None else len(ids))
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self.faiss_index is None:
            if ids is None:
                return faiss.knn(queries, self.vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
            scores, local = faiss.knn(queries, np.ascontiguousarray(self.vectors[ids]), k, metric=faiss.METRIC_INNER_PRODUCT)
            return scores, np.where(local >= 0, ids[np.maximum(local, 0)], -1)
        options: dict[str, Any] = {} if ids is None else {"sel": faiss.IDSelectorBatch(ids)}
        if ef_search is not None or kind == "hnsw" and options:
            params = faiss.SearchParametersHNSW(efSearch=int(ef_search or self.faiss_index.hnsw.efSearch), **options)
        elif nprobe is not None or kind == "ivf" and options:
            params = faiss.SearchParametersIVF(nprobe=int(nprobe or self.faiss_index.nprobe), **options)
        else:
            params = None
        return self.faiss_index.search(queries, k, params=params)

    def check_queries(self, queries: np.ndarray) -> np.ndarray:
        """Queries as a C-contiguous float32 (queries, dim) matrix, or a clear error."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.settings["dim"]:
            raise DataError(f"dense queries must be (queries, {self.settings['dim']}), got shape {queries.shape}")
        return queries


def add_dense(index: "SparseIndex", vectors: np.ndarray, doc_ids: Sequence[str], **options: Any) -> DenseIndex:
    """Give ``index`` a dense part built from ``vectors`` (row i is document ``doc_ids[i]``).

    Rows are put in the index's document order (which reordering may have changed);
    ``options`` go to :meth:`DenseIndex.build`. Saved with the index by ``index.save``.
    """
    position = {d: i for i, d in enumerate(doc_ids)}
    if len(position) != len(doc_ids) or len(doc_ids) != len(vectors):
        raise DataError(f"{len(doc_ids)} document ids (unique: {len(position)}) for {len(vectors)} dense vectors")
    missing = [d for d in index.doc_ids if d not in position]
    if missing or len(doc_ids) != index.num_docs:
        raise DataError(f"the dense vectors do not cover the index's documents (e.g. {missing[:3]})")
    rows = np.fromiter((position[d] for d in index.doc_ids), dtype=np.int64, count=index.num_docs)
    index.dense = DenseIndex.build(np.asarray(vectors)[rows], **options)
    index.manifest["dense"] = index.dense.settings
    return index.dense


def _kmeans(vectors: np.ndarray, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (faiss): unit centroids and each vector's nearest one by inner product."""
    faiss = _faiss()
    dim = vectors.shape[1]
    if n_clusters == 1:
        centroid = vectors.mean(axis=0, keepdims=True)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        return centroid.astype(np.float32), np.zeros(len(vectors), dtype=np.int64)
    km = faiss.Kmeans(dim, n_clusters, niter=20, seed=seed, spherical=True, min_points_per_centroid=1, max_points_per_centroid=1 << 30)
    km.train(vectors)
    _, assignment = faiss.knn(vectors, km.centroids, 1, metric=faiss.METRIC_INNER_PRODUCT)
    return np.ascontiguousarray(km.centroids, dtype=np.float32), assignment[:, 0].astype(np.int64)
