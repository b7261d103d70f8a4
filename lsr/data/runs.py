"""TREC run files (``qid Q0 docno rank score tag``), the exchange format of trec_eval and Anserini,
with an optional JSON sidecar (``<run>.json``) describing the system, so a run can be reproduced."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lsr.data.files import open_text
from lsr.errors import DataError

# query id -> {doc id: score}, best first.
Run = dict[str, dict[str, float]]


def read_run(path: str | os.PathLike) -> Run:
    """A TREC run file (also gzipped) as ``{qid: {docno: score}}``, each query's documents best first.

    Ties keep file order; a document retrieved twice for one query is an error, as its score
    would depend on which line wins.
    """
    f = Path(path)
    if not f.is_file():
        raise DataError(f"no run file at {f}")
    rows: dict[str, list[tuple[float, int, str]]] = {}
    with open_text(f) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise DataError(f"{f}:{lineno}: expected 'qid Q0 docno rank score tag', got {line.strip()[:80]!r}")
            qid, _, did, _rank, score, _tag = parts
            try:
                s = float(score)
            except ValueError:
                raise DataError(f"{f}:{lineno}: score must be a number, got {score!r}") from None
            rows.setdefault(qid, []).append((s, lineno, did))
    run: Run = {}
    for qid, hits in rows.items():
        hits.sort(key=lambda h: (-h[0], h[1]))
        docs: dict[str, float] = {}
        for s, lineno, did in hits:
            if did in docs:
                raise DataError(f"{f}:{lineno}: query {qid!r} retrieves document {did!r} twice")
            docs[did] = s
        run[qid] = docs
    return run


def write_run(path: str | os.PathLike, run: Mapping[str, Mapping[str, float]], *, tag: str = "lsr", description: Mapping[str, Any] | None = None) -> Path:
    """Write a TREC run (ranks follow each query's order) and, if given, its description sidecar.

    The run is written to a temporary file and renamed, so an interrupted write never leaves a
    truncated run that would score as a worse system.
    """
    f = Path(path)
    f.parent.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"\s+", "_", tag) or "lsr"  # the tag is one whitespace-separated column
    tmp = f.with_name(f".{f.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for qid, docs in run.items():
            for rank, (did, score) in enumerate(docs.items(), 1):
                fh.write(f"{qid} Q0 {did} {rank} {score:.6f} {tag}\n")
    tmp.replace(f)
    if description is not None:
        _sidecar(f).write_text(json.dumps(description, indent=2, default=str) + "\n", encoding="utf-8")
    return f


def run_description(path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar description written next to a run, if any."""
    side = _sidecar(Path(path))
    return json.loads(side.read_text(encoding="utf-8")) if side.is_file() else None


def iter_run_rows(run: Mapping[str, Mapping[str, float]]) -> Iterator[tuple[str, str, float]]:
    """``(qid, docno, score)`` triples, for consumers that take a flat list of scored documents."""
    for qid, docs in run.items():
        for did, score in docs.items():
            yield qid, did, float(score)


def _sidecar(run_file: Path) -> Path:
    return run_file.with_name(run_file.name + ".json")
