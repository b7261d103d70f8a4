"""Text-file reading shared by every loader: gzip chosen by suffix, JSON lines numbered for errors."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from lsr.errors import DataError


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
