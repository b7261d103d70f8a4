"""Topics in every format test collections ship them: BEIR ``queries.jsonl``, ``qid<TAB>text`` TSV
(both read by :func:`lsr.data.beir.load_queries`) and the SGML ``<top>`` files of the TREC tracks,
recognised by content because their names (``topics.301-350``...) say nothing of the format."""

from __future__ import annotations

import os
import re
from pathlib import Path

from lsr.data.beir import Query, add_query, load_queries
from lsr.data.files import open_text
from lsr.errors import DataError

SGML_FIELDS = ("title", "desc", "narr")
_SNIFF_CHARS = 100_000  # a <top> tag appears this early in any SGML topics file
_SGML_TOP = re.compile(r"<top>(.*?)</top>", re.S | re.I)
_SGML_FIELD = re.compile(r"<(num|title|desc|narr)>(.*?)(?=<(?:num|title|desc|narr|/top)>|$)", re.S | re.I)
_NUM_LABEL = re.compile(r"^\s*(Number:)?", re.I)
_FIELD_LABEL = re.compile(r"^\s*(Topic:|Description:|Narrative:)", re.I)


def load_topics(path: str | os.PathLike, *, field: str = "title") -> list[Query]:
    """Queries from queries.jsonl, a ``qid<TAB>text`` TSV, or TREC SGML topics (also gzipped).

    For SGML topics ``field`` picks ``title`` (default), ``desc`` or ``narr``.
    """
    if field not in SGML_FIELDS:
        raise ValueError(f"field must be one of {SGML_FIELDS}, got {field!r}")
    p = Path(path)
    f = p / "queries.jsonl" if p.is_dir() else p
    if not f.is_file():
        raise DataError(f"no topics file at {f}")
    with open_text(f) as fh:
        head = fh.read(_SNIFF_CHARS)
        sgml = head + fh.read() if "<top>" in head.lower() else None
    return load_queries(f) if sgml is None else _parse_sgml_topics(sgml, f, field)


def _parse_sgml_topics(text: str, f: Path, field: str) -> list[Query]:
    """One query per ``<top>``: its ``<num>`` and the chosen field, labels dropped, spaces collapsed."""
    seen: dict[str, int] = {}
    topics: list[Query] = []
    lineno, pos = 1, 0
    for top in _SGML_TOP.finditer(text):
        lineno, pos = lineno + text.count("\n", pos, top.start()), top.start()
        fields = {k.lower(): v for k, v in _SGML_FIELD.findall(top.group(1))}
        num = _NUM_LABEL.sub("", fields.get("num", "")).strip()
        value = _FIELD_LABEL.sub("", fields.get(field, ""))
        topics.append(add_query(seen, num, " ".join(value.split()), f, lineno))
    if not topics:
        raise DataError(f"{f}: no <top> topics found")
    return topics
