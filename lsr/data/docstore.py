"""The document store of a collection: an SQLite database (WAL) of documents and commit points.

One row per (segment, row) that ever held a document: its external id, title, text, JSON
metadata, and the generation that deleted it (NULL while live). Rows are never updated in
place: an update adds a new row and marks the old one deleted, so a reader of an older
generation still finds the fields of every hit it returns. The ``commits`` table holds the
commit points; a commit's documents and its point are written in one transaction, which is
what makes a commit atomic (see :mod:`lsr.retrieval.collection` for the whole protocol).

With ``synchronous=FULL`` a transaction is on disk when its COMMIT returns; WAL lets readers
in other connections and processes read the last committed state while a writer writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsr.errors import DataError, LsrError

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    segment TEXT NOT NULL,
    row INTEGER NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    length INTEGER NOT NULL DEFAULT 0,
    deleted_gen INTEGER,
    PRIMARY KEY (segment, row)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS docs_live_id ON docs (id) WHERE deleted_gen IS NULL;
CREATE TABLE IF NOT EXISTS commits (generation INTEGER PRIMARY KEY, point TEXT NOT NULL, created TEXT NOT NULL);
"""
FIELDS = ("title", "text", "metadata")


class StoreError(LsrError, sqlite3.OperationalError):
    """The database refused a write (a full disk, permissions): one line for the user, and
    still the sqlite3 error it was for callers that catch that."""


@dataclass(frozen=True)
class StoredDoc:
    """A stored document and where its vector lives."""

    id: str
    segment: str
    row: int
    title: str
    text: str
    metadata: dict[str, Any]
    length: int = 0  # analyzed terms, for BM25 collections (0 otherwise)

    def fields(self, names: Sequence[str], snippet: int | None = None) -> dict[str, Any]:
        """The named fields; ``snippet`` cuts title and text to that many characters."""
        out: dict[str, Any] = {}
        for name in names:
            value = getattr(self, name)
            out[name] = value[:snippet] if snippet is not None and isinstance(value, str) else value
        return out


class DocStore:
    """SQLite access for one collection; one connection per thread (sqlite3's rule)."""

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._local = threading.local()
        if not readonly:
            self._db().executescript(SCHEMA)  # idempotent; executescript commits by itself

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            uri = f"file:{self.path}?mode={'ro' if self.readonly else 'rwc'}"
            try:
                db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=True, timeout=30)
            except sqlite3.OperationalError as e:
                raise DataError(f"cannot open the document store {self.path}: {e}") from None
            if not self.readonly:
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # ---- transactions -------------------------------------------------------------------
    class _Transaction:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind, value, tb) -> None:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")

    def transaction(self) -> "DocStore._Transaction":
        """``with store.transaction() as db:``: all or nothing, durable when the block exits."""
        return DocStore._Transaction(self._db())

    # ---- commit points ------------------------------------------------------------------
    def latest_commit(self) -> dict[str, Any] | None:
        row = self._db().execute("SELECT point FROM commits ORDER BY generation DESC LIMIT 1").fetchone()
        return json.loads(row[0]) if row else None

    def commit(self, point: Mapping[str, Any], added: Iterable[tuple], deleted: Mapping[str, Sequence[int]],
               dropped_segments: Sequence[str], created: str) -> None:
        """Publish generation ``point["generation"]``: add document rows ``(segment, row, id,
        title, text, metadata_json, length)``, mark ``deleted`` rows (segment -> rows), forget the rows
        of merged-away segments, and record the point, in one transaction."""
        gen = int(point["generation"])
        try:
            with self.transaction() as db:
                db.executemany("INSERT INTO docs (segment, row, id, title, text, metadata, length) VALUES (?, ?, ?, ?, ?, ?, ?)", added)
                for segment, rows in deleted.items():
                    db.executemany("UPDATE docs SET deleted_gen = ? WHERE segment = ? AND row = ? AND deleted_gen IS NULL",
                                   [(gen, segment, int(r)) for r in rows])
                db.executemany("DELETE FROM docs WHERE segment = ?", [(s,) for s in dropped_segments])
                db.execute("INSERT INTO commits (generation, point, created) VALUES (?, ?, ?)", (gen, json.dumps(point), created))
                db.execute("DELETE FROM commits WHERE generation < ?", (gen - 16,))  # a short history, for inspection
        except sqlite3.OperationalError as e:  # a full disk, a read-only file, a lock held too long
            raise StoreError(f"{self.path}: generation {gen} was not committed ({e}); the previous one is intact") from e

    # ---- reads --------------------------------------------------------------------------
    def live(self, ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """Live documents among ``ids``: id -> (segment, row)."""
        out: dict[str, tuple[str, int]] = {}
        db = self._db()
        for lo in range(0, len(ids), 500):
            part = list(ids[lo : lo + 500])
            marks = ",".join("?" * len(part))
            for doc_id, segment, row in db.execute(
                f"SELECT id, segment, row FROM docs WHERE deleted_gen IS NULL AND id IN ({marks})", part
            ):
                out[doc_id] = (segment, row)
        return out

    def get(self, doc_id: str) -> StoredDoc | None:
        """The live document ``doc_id``, or None."""
        row = self._db().execute(
            "SELECT id, segment, row, title, text, metadata, length FROM docs WHERE id = ? AND deleted_gen IS NULL", (doc_id,)
        ).fetchone()
        return _doc(row) if row else None

    def at(self, places: Sequence[tuple[str, int]]) -> list[StoredDoc | None]:
        """Documents at (segment, row) places, in order (None where the place holds nothing)."""
        db = self._db()
        found: dict[tuple[str, int], StoredDoc] = {}
        by_segment: dict[str, list[int]] = {}
        for segment, row in places:
            by_segment.setdefault(segment, []).append(int(row))
        for segment, rows in by_segment.items():
            for lo in range(0, len(rows), 500):
                part = rows[lo : lo + 500]
                marks = ",".join("?" * len(part))
                for r in db.execute(
                    f"SELECT id, segment, row, title, text, metadata, length FROM docs WHERE segment = ? AND row IN ({marks})",
                    [segment, *part],
                ):
                    found[(r[1], r[2])] = _doc(r)
        return [found.get((s, int(r))) for s, r in places]

    def metadata(self, segment: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """(row, metadata) of every row of ``segment`` (deleted ones included: the bitmap
        excludes them), in row order."""
        for row, meta in self._db().execute("SELECT row, metadata FROM docs WHERE segment = ? ORDER BY row", (segment,)):
            yield row, json.loads(meta)

    def length_stats(self, excluding: Mapping[str, Sequence[int]]) -> tuple[int, int]:
        """(documents with a term, total terms) over live documents, less the ``excluding``
        (segment -> rows) ones: BM25's collection statistics."""
        db = self._db()
        count, total = db.execute("SELECT COUNT(*), COALESCE(SUM(length), 0) FROM docs WHERE deleted_gen IS NULL AND length > 0").fetchone()
        for segment, rows in excluding.items():
            for lo in range(0, len(rows), 500):
                part = [int(r) for r in rows[lo : lo + 500]]
                marks = ",".join("?" * len(part))
                c, t = db.execute(f"SELECT COUNT(*), COALESCE(SUM(length), 0) FROM docs WHERE deleted_gen IS NULL AND length > 0 "
                                  f"AND segment = ? AND row IN ({marks})", [segment, *part]).fetchone()
                count, total = count - c, total - t
        return int(count), int(total)


def _doc(row: tuple) -> StoredDoc:
    doc_id, segment, r, title, text, meta, length = row
    return StoredDoc(doc_id, segment, int(r), title, text, json.loads(meta), int(length))
