"""Text-file reading shared by every loader: gzip chosen by suffix, JSON lines numbered for errors."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from lsr.errors import DataError

MAX_ID_CHARS = 512


def open_text(path: str | os.PathLike) -> TextIO:
    """UTF-8 text of ``path``, through gzip when it ends in ``.gz`` (how TREC and Anserini ship files)."""
    p = Path(path)
    return gzip.open(p, "rt", encoding="utf-8") if p.suffix == ".gz" else open(p, encoding="utf-8")


def format_suffix(path: Path) -> str:
    """The suffix naming a file's format under any ``.gz``: ``.tsv`` for ``topics.tsv.gz``."""
    return Path(path.name.removesuffix(".gz")).suffix


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line; a malformed line raises DataError naming it."""
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            yield lineno, parse_object(line, f"{path}:{lineno}")


def parse_object(text: str, where: str) -> dict:
    """One JSON object, or a DataError that names ``where`` (a file and line, a flag)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


# Every character Python's str.isspace counts (what record_id refuses), as a regex class that
# JSON Schema (ECMA) and Python read alike: ECMA's \s is a different set (it lacks \x1c-\x1f).
WHITE_SPACE = "".join(f"\\u{c:04x}" for c in range(0x10000) if chr(c).isspace())
ID_PATTERN = f"^[^{WHITE_SPACE}]+$"
"""A regex of the ids a TREC run can carry: one or more characters, none of them white space."""


def record_id(obj: Mapping[str, Any], where: str) -> str:
    """The ``_id`` (or ``id``) of a corpus or topics record: a non-empty string (numbers are
    taken as their text) that a TREC run can carry (no white space)."""
    raw = obj.get("_id", obj.get("id"))
    if raw is None or isinstance(raw, (dict, list, bool)) or not str(raw).strip():
        raise DataError(f"{where}: missing '_id'")
    doc_id = str(raw)
    if any(c.isspace() for c in doc_id):
        raise DataError(f"{where}: id {doc_id!r} contains white space, which TREC runs cannot carry")
    if len(doc_id) > MAX_ID_CHARS:
        raise DataError(f"{where}: id is longer than {MAX_ID_CHARS} characters")
    return doc_id


def check_text(text: str, where: str) -> str:
    """``text`` if it is valid Unicode (a lone surrogate, from JSON escapes or undecodable bytes
    in argv, cannot be encoded, and would fail deep inside a tokenizer or the database)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataError(f"{where} is not valid Unicode (character {e.start}: {text[e.start]!r})") from None
    return text
