"""Relevance judgments in BEIR TSV (``query-id<TAB>corpus-id<TAB>score``, header optional) or TREC
(``qid iter docno rel``) format, plain or gzipped: :func:`load_qrels` tells them apart line by line,
since collections ship either and scores must not depend on which."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lsr.data.files import open_text
from lsr.errors import DataError


@dataclass
class Qrels:
    """Judgments ``query id -> {doc id: relevance}`` read from ``source``.

    A query is *judged* when it has at least one judgment line, whatever its relevance;
    relevance <= 0 means judged non-relevant.
    """

    judgments: dict[str, dict[str, int]]
    source: str = "qrels"
    lines: int = 0

    def __len__(self) -> int:
        return self.lines

    @property
    def query_ids(self) -> list[str]:
        return list(self.judgments)

    def relevant_query_ids(self, level: int = 1) -> list[str]:
        """Queries with at least one document of relevance >= ``level``."""
        return [q for q, docs in self.judgments.items() if any(r >= level for r in docs.values())]

    def restrict(self, query_ids: Iterable[str]) -> Qrels:
        """The judgments of these queries only (``lines`` recounted, so reports stay truthful)."""
        keep = set(query_ids)
        judgments = {q: d for q, d in self.judgments.items() if q in keep}
        return Qrels(judgments, self.source, sum(len(d) for d in judgments.values()))


# Last column of BEIR's header line (``query-id corpus-id score``) and its variants.
_HEADER_WORDS = frozenset({"score", "relevance", "rel", "label"})


def load_qrels(path: str | os.PathLike) -> Qrels:
    """Read qrels in BEIR TSV or TREC format (also gzipped); errors name the file and line.

    A BEIR header line (``query-id corpus-id score``) is skipped. A (query, document) pair
    judged twice is an error, as it would make the scores depend on which line wins.
    """
    f = Path(path)
    if f.is_dir():
        raise DataError(f"{f} is a folder; give the qrels file (e.g. {f / 'qrels' / 'test.tsv'})")
    if not f.is_file():
        raise DataError(f"no qrels file at {f}")
    judgments: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    lines = 0
    with open_text(f) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = [p.strip() for p in (line.split("\t") if "\t" in line else line.split())]
            if len(parts) == 3:
                qid, did, rel = parts
            elif len(parts) == 4:
                qid, _, did, rel = parts
            else:
                raise DataError(f"{f}:{lineno}: expected 'query-id<TAB>corpus-id<TAB>score' or 'qid iter docno rel', got {line.strip()[:80]!r}")
            try:
                relevance = int(rel)
            except ValueError:
                if lines == 0 and rel.lower() in _HEADER_WORDS:  # BEIR's header line
                    continue
                raise DataError(f"{f}:{lineno}: relevance must be an integer, got {rel!r}") from None
            if not qid or not did:
                raise DataError(f"{f}:{lineno}: empty query or document id")
            key = (qid, did)
            if key in first_line:
                raise DataError(f"{f}:{lineno}: query {qid!r} judges document {did!r} twice (first on line {first_line[key]})")
            first_line[key] = lineno
            judgments.setdefault(qid, {})[did] = relevance
            lines += 1
    if not lines:
        raise DataError(f"{f}: no judgments")
    return Qrels(judgments, str(f), lines)


def write_qrels(path: str | os.PathLike, qrels: Qrels | Mapping[str, Mapping[str, int]], *, fmt: str = "trec") -> None:
    """Write qrels as TREC (``qid 0 docno rel``) or BEIR TSV (with its header)."""
    if fmt not in ("trec", "beir"):
        raise ValueError("fmt must be 'trec' or 'beir'")
    judgments = qrels.judgments if isinstance(qrels, Qrels) else qrels
    with open(path, "w", encoding="utf-8") as f:
        if fmt == "beir":
            f.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in judgments.items():
            for did, rel in docs.items():
                f.write(f"{qid} 0 {did} {rel}\n" if fmt == "trec" else f"{qid}\t{did}\t{rel}\n")
