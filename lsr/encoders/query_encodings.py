"""Anserini's query-encoding files: ``qid<TAB>token token ...``, a token repeated by its weight.

Anserini (and pyserini's prebuilt ``topics.*.splade-*.tsv.gz`` files) store precomputed
learned-sparse queries this way: each token appears as many times as its quantized integer
weight. :func:`read_query_encodings` turns such a file into ``{token: weight}`` queries that
:meth:`lsr.index.Index.search_batch` takes directly; :func:`write_query_encodings` writes
an encoder's queries in the same format (``scale`` is the weight of one repetition).
"""

from __future__ import annotations

import gzip
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from lsr.data.vectors import SparseVectors
from lsr.errors import DataError

DEFAULT_SCALE = 100.0  # one repetition = 0.01 of weight


def _open(path: Path, mode: str):
    return gzip.open(path, mode + "t", encoding="utf-8") if path.suffix == ".gz" else open(path, mode, encoding="utf-8")


def read_query_encodings(path: str | os.PathLike) -> tuple[list[str], list[dict[str, float]]]:
    """Query ids and ``{token: repetitions}`` weights; errors name the file and line."""
    f = Path(path)
    if not f.is_file():
        raise DataError(f"no query-encoding file at {f}")
    ids: list[str] = []
    rows: list[dict[str, float]] = []
    seen: dict[str, int] = {}
    with _open(f, "r") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            qid, sep, tokens = line.partition("\t")
            qid = qid.strip()
            if not sep or not qid:
                raise DataError(f"{f}:{lineno}: expected 'qid<TAB>token token ...'")
            if qid in seen:
                raise DataError(f"{f}:{lineno}: duplicate query id {qid!r} (first on line {seen[qid]})")
            seen[qid] = lineno
            ids.append(qid)
            rows.append({t: float(c) for t, c in Counter(tokens.split()).items()})
    if not ids:
        raise DataError(f"{f}: no queries")
    return ids, rows


def quantize_query(weights: dict[str, float], scale: float = DEFAULT_SCALE) -> dict[str, int]:
    """Integer repetitions per token (rounded; tokens that round to 0 are dropped)."""
    out = {}
    for token, w in weights.items():
        n = int(round(w * scale))
        if n > 0:
            out[token] = n
    return out


def write_query_encodings(
    path: str | os.PathLike,
    ids: Sequence[str],
    queries: SparseVectors | Sequence[dict[str, float]],
    *,
    scale: float = DEFAULT_SCALE,
) -> Path:
    """Write queries in Anserini's format (gzipped when ``path`` ends in .gz).

    Tokens containing whitespace cannot be represented and raise DataError.
    """
    if scale <= 0:
        raise ValueError("scale must be > 0")
    rows = queries.to_dicts() if isinstance(queries, SparseVectors) else list(queries)
    if len(rows) != len(ids):
        raise ValueError(f"{len(ids)} ids for {len(rows)} queries")
    f = Path(path)
    f.parent.mkdir(parents=True, exist_ok=True)
    with _open(f, "w") as fh:
        for qid, row in zip(ids, rows):
            if any(c in str(qid) for c in "\t\n"):
                raise DataError(f"query id {qid!r} contains a tab or newline")
            parts = []
            for token, n in sorted(quantize_query(row, scale).items(), key=lambda x: -x[1]):
                if not token or any(c.isspace() for c in token):
                    raise DataError(f"query {qid!r}: token {token!r} contains whitespace")
                parts.append(" ".join([token] * n))
            fh.write(f"{qid}\t{' '.join(parts)}\n")
    return f


def encode_to_file(encoder, queries, path: str | os.PathLike, *, scale: float = DEFAULT_SCALE, batch_size: int | None = None) -> Path:
    """Encode ``queries`` (``lsr.data.Query`` objects) with ``encoder`` and write them for Anserini."""
    vectors = encoder.encode_queries([q.text for q in queries], batch_size=batch_size)
    return write_query_encodings(path, [q.id for q in queries], vectors, scale=scale)
