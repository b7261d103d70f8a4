"""Sparse vectors as one CSR batch: the currency between encoders, files and the index."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsr.data.files import format_suffix, iter_jsonl, record_id
from lsr.errors import DataError
from lsr.util import concat, offsets


@dataclass(frozen=True)
class SparseVectors:
    """A batch of sparse vectors over a vocabulary, stored as CSR rows.

    Row ``i`` holds term ids ``indices[indptr[i]:indptr[i+1]]`` (ascending) with
    ``values`` of the same slice. ``vocab[term_id]`` is the term's string.
    """

    indptr: np.ndarray  # int64, len(rows) + 1
    indices: np.ndarray  # int32
    values: np.ndarray  # float32
    vocab: Sequence[str]

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Term ids and weights of row ``i``."""
        lo, hi = self.indptr[i], self.indptr[i + 1]
        return self.indices[lo:hi], self.values[lo:hi]

    def to_dict(self, i: int) -> dict[str, float]:
        """Row ``i`` as ``{token: weight}``, heaviest first."""
        ids, vals = self.row(i)
        order = np.argsort(-vals, kind="stable")
        return {self.vocab[ids[j]]: float(vals[j]) for j in order}

    def to_dicts(self) -> list[dict[str, float]]:
        return [self.to_dict(i) for i in range(len(self))]

    @classmethod
    def from_dicts(
        cls,
        rows: Iterable[Mapping[str, float]],
        vocab: Sequence[str] | None = None,
        *,
        source: str = "vectors",
        term_ids: Mapping[str, int] | None = None,
    ) -> "SparseVectors":
        """Build from ``{token: weight}`` rows.

        With ``vocab`` given, unknown tokens are dropped (they cannot match anything) and the
        result shares that vocabulary object; ``term_ids`` (token -> position in it) saves
        rebuilding that map per call. Without ``vocab``, the vocabulary grows in order of
        first appearance.
        """
        grow = vocab is None
        terms: Sequence[str] = [] if grow else vocab
        term_id = term_ids if term_ids is not None and not grow else {t: i for i, t in enumerate(terms)}
        indptr, indices, values = [0], [], []
        for n, row in enumerate(rows):
            pairs = []
            for token, weight in row.items():
                w = check_weight(weight, f"{source}: row {n}, token {token!r}")
                tid = term_id.get(token)
                if tid is None:
                    if not grow:
                        continue
                    tid = term_id[token] = len(terms)
                    terms.append(token)  # type: ignore[attr-defined]
                if w > 0:
                    pairs.append((tid, w))
            pairs.sort()
            indices.extend(p[0] for p in pairs)
            values.extend(p[1] for p in pairs)
            indptr.append(len(indices))
        return cls(
            np.asarray(indptr, dtype=np.int64),
            np.asarray(indices, dtype=np.int32),
            np.asarray(values, dtype=np.float32),
            terms,
        )

    @classmethod
    def concat(cls, parts: Sequence["SparseVectors"]) -> "SparseVectors":
        """Stack batches that share one vocabulary."""
        if not parts:
            raise ValueError("nothing to concatenate")
        starts = offsets([p.nnz for p in parts])[:-1]
        indptr = concat([parts[0].indptr[:1]] + [p.indptr[1:] + o for p, o in zip(parts, starts)], np.int64)
        return cls(
            indptr,
            concat([p.indices for p in parts], np.int32),
            concat([p.values for p in parts], np.float32),
            parts[0].vocab,
        )

    def take(self, order: Sequence[int] | np.ndarray) -> "SparseVectors":
        """Rows in the given order."""
        order = np.asarray(order, dtype=np.int64)
        lengths = np.diff(self.indptr)[order]
        indptr = offsets(lengths)
        # position p of the output row r reads from old start of r + (p - new start of r)
        src = np.repeat(self.indptr[order] - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseVectors(indptr, self.indices[src], self.values[src], self.vocab)


def check_weight(weight: object, where: str) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise DataError(f"{where}: weight must be a number, got {weight!r}")
    w = float(weight)
    if not math.isfinite(w) or w < 0:
        raise DataError(f"{where}: weight must be finite and >= 0, got {weight!r}")
    return w


def write_vectors_jsonl(path: str | Path, ids: Sequence[str], vectors: SparseVectors) -> None:
    """Write one ``{"id": ..., "vector": {token: weight}}`` line per row."""
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
    with open(path, "w", encoding="utf-8") as f:
        for i, doc_id in enumerate(ids):
            vec = {t: round(w, 5) for t, w in vectors.to_dict(i).items()}
            f.write(json.dumps({"id": doc_id, "vector": vec}, ensure_ascii=False) + "\n")


def read_vectors_jsonl(path: str | Path, vocab: Sequence[str] | None = None) -> tuple[list[str], SparseVectors]:
    """Read what :func:`write_vectors_jsonl` writes; errors name the file and line."""
    ids, _, vectors = read_vector_records(path, vocab)
    return ids, vectors


def read_vector_records(path: str | Path, vocab: Sequence[str] | None = None) -> tuple[list[str], list[str], SparseVectors]:
    """Ids, ``contents`` texts ("" where absent) and vectors of ``{"id", "vector"}`` lines: our
    vectors files and Anserini's JsonVectorCollection (``{"id", "contents", "vector"}``, a file
    or a folder of ``.json``/``.jsonl`` files, gzipped or not, read in name order)."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if format_suffix(p) in (".json", ".jsonl")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no .json or .jsonl files in this folder")
    ids: list[str] = []
    texts: list[str] = []
    rows: list[dict[str, float]] = []
    seen: dict[str, str] = {}
    for file in files:
        for lineno, obj in iter_jsonl(file):
            where = f"{file}:{lineno}"
            doc_id = record_id(obj, where)
            if doc_id in seen:
                raise DataError(f"{where}: duplicate id {doc_id!r} (first at {seen[doc_id]})")
            seen[doc_id] = where
            vec = obj.get("vector")
            if not isinstance(vec, dict):
                raise DataError(f"{where}: 'vector' must be an object of token -> weight")
            for token, weight in vec.items():
                check_weight(weight, f"{where}: token {token!r}")
            contents = obj.get("contents", "")
            ids.append(doc_id)
            texts.append(contents if isinstance(contents, str) else "")
            rows.append(vec)
    return ids, texts, SparseVectors.from_dicts(rows, vocab, source=str(path))
