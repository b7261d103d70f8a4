"""A living collection: stored documents, inserts and deletes without a rebuild, crash-safe commits.

Lucene's design, on this project's parts. A collection directory holds

- ``collection.json``: what the collection was created with (query encoder, build settings);
- ``segments/<name>/``: immutable SparseIndex directories (with their approx and dense parts
  when the collection has them), each written by the index layer's atomic, fsynced save;
- ``deletes/<name>.g<N>.npy``: a segment's deleted rows as of generation N (a new file per
  change: files are never rewritten);
- ``vocab.json``: the vocabulary, append-only (a BM25 or vectors collection grows it);
- ``docs.sqlite``: the document store (:mod:`lsr.data.docstore`), whose ``commits`` table holds
  the commit points;
- ``write.lock``: held (``flock``) by the one writer; the OS releases it when the writer dies,
  so a killed writer leaves no stale lock.

The commit protocol: ``add``/``upsert``/``delete`` only buffer (nothing is durable); ``commit``
encodes nothing more, writes the new segment and the new deletion bitmaps (each fsynced, then
renamed into place), appends new terms to ``vocab.json`` the same way, and then publishes
generation N in ONE SQLite transaction holding the new documents' rows, the deletion marks and
the commit point. When ``commit`` returns, the generation is durable (``synchronous=FULL``); a
crash before that leaves generation N-1, whole, and files nobody names, which the next writer
removes. Readers read the newest commit point and open what it names; they never wait for the
writer (SQLite WAL), and segment files stay valid for a reader that has them open.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsr.data.beir import Document
from lsr.data.docstore import DocStore, StoredDoc
from lsr.data.filters import Columns, check_filter, evaluate
from lsr.data.vectors import SparseVectors
from lsr.encoders.base import Encoder
from lsr.encoders.bm25 import BM25Encoder, bm25_weights
from lsr.encoders.registry import load_encoder
from lsr.errors import DataError, IndexFormatError, LsrError
from lsr.index import SparseIndex, storage
from lsr.index.approx import ApproxSettings
from lsr.index.dense import add_dense
from lsr.index.segments import Segments
from lsr.util import concat, offsets
from lsr.version import __version__

FORMAT = "lsr-collection"
FORMAT_VERSION = 2
SETTINGS_FILE = "collection.json"
# Size-tiered merging (Lucene's TieredMergePolicy in spirit): when MERGE_FACTOR adjacent
# segments fall in one size tier (a factor of MERGE_FACTOR in documents), they become one.
MERGE_FACTOR = 8
log = logging.getLogger(__name__)


@dataclass
class _Pending:
    """What the writer has buffered since the last commit."""

    docs: dict[str, Document] = field(default_factory=dict)  # id -> newest version to add
    deletes: set[str] = field(default_factory=set)  # committed ids to delete

    def __bool__(self) -> bool:
        return bool(self.docs or self.deletes)


class Collection:
    """Open with :meth:`open` (readers; ``writable=True`` for the one writer) or :meth:`create`."""

    def __init__(self, path: Path, settings: dict[str, Any], store: DocStore | None, *, lock: Any = None,
                 legacy: SparseIndex | None = None) -> None:
        self.path = path
        self.settings = settings
        self.store = store
        self._lock_file = lock
        self._legacy = legacy
        self._pending = _Pending()
        self._mutex = threading.RLock()
        self._segments: dict[str, SparseIndex] = {}
        self._deletes: dict[str, np.ndarray] = {}
        self._columns: dict[str, Columns] = {}
        self._snapshot: Segments | None = None
        self._encoder: Encoder | None = None
        self._dense_encoder: Encoder | None = None
        self._vocab: list[str] | None = None

    # ---- opening ------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, *, model: str | None, encoder_options: Mapping[str, Any] | None = None,
               quantization: str = "u16", block_size: int = 32, reorder: str = "none",
               approx: bool | ApproxSettings = False, dense_model: str | None = None,
               dense_options: Mapping[str, Any] | None = None, query: Mapping[str, Any] | None = None) -> "Collection":
        """A new, empty collection at ``path`` (which must not exist or be empty), open for writing.

        ``model`` encodes document texts and text queries (None: documents come as vectors);
        a SPLADE model fixes the vocabulary (its word pieces), BM25 and vectors grow it.
        ``query`` sets how text queries are encoded by default (see :func:`query_defaults`).
        """
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise IndexFormatError(f"{path} exists and is not empty: a new collection needs an empty place")
        encoder = load_encoder(model, **(encoder_options or {})) if model else None
        vocab = list(encoder.vocab) if encoder is not None and encoder.per_document else []
        settings = _settings(model, encoder.settings() if encoder is not None else dict(encoder_options or {}), not vocab,
                             {"quantization": quantization, "block_size": block_size, "reorder": reorder}, approx,
                             {"model": dense_model, "options": dict(dense_options or {})} if dense_model else None, query)
        _write_new(path, settings, vocab, None, [])
        collection = cls.open(path, writable=True)
        collection._encoder = encoder
        return collection

    @classmethod
    def build(cls, path: str | os.PathLike, index: SparseIndex, docs: Sequence[Document], *, growing_vocab: bool,
              approx: bool | ApproxSettings = False, dense: Mapping[str, Any] | None = None,
              lengths: Sequence[int] | None = None, query: Mapping[str, Any] | None = None) -> Path:
        """Write ``index`` (built from ``docs``, any order) as a one-segment collection at
        ``path``, replacing what is there (an index or a collection) crash-safely."""
        settings = _settings(index.manifest.get("model"), index.manifest.get("encoder", {}), growing_vocab,
                             {k: index.manifest["settings"][k] for k in ("quantization", "block_size", "reorder")}, approx, dense, query)
        return storage.replace_dir(path, lambda tmp: _write_new(tmp, settings, index.vocab, index, docs, lengths))

    @classmethod
    def open(cls, path: str | os.PathLike, *, writable: bool = False) -> "Collection":
        """Open a collection directory; a format-1 index directory opens read-only as a
        one-segment collection (upgrade it with :func:`upgrade` to write to it)."""
        path = Path(path)
        storage.recover(path)
        if not (path / SETTINGS_FILE).is_file():
            index = SparseIndex.load(path)  # a format-1 index (recovered by the index layer if a save was cut short)
            if writable:
                raise IndexFormatError(f"{path} is a format-1 index (read-only here): upgrade it to a collection with "
                                       f"`lsr upgrade --index {path}` to add or delete documents")
            settings = {"model": index.manifest.get("model"), "encoder": index.manifest.get("encoder", {}), "format_version": 1}
            return cls(path, settings, None, legacy=index)
        try:
            settings = json.loads((path / SETTINGS_FILE).read_text(encoding="utf-8"))
        except ValueError as e:  # not UTF-8, or not JSON
            raise IndexFormatError(f"{path / SETTINGS_FILE} is damaged: {e}") from None
        if not isinstance(settings, dict) or settings.get("format") != FORMAT:
            raise IndexFormatError(f"{path} is not an lsr collection (format {settings.get('format') if isinstance(settings, dict) else None!r})")
        version = settings.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise IndexFormatError(f"{path} has collection format {version!r}, newer than this lsr reads ({FORMAT_VERSION}); upgrade lsr")
        lock = _acquire_lock(path) if writable else None
        collection = cls(path, settings, DocStore(path / "docs.sqlite", readonly=not writable), lock=lock)
        if writable:
            collection._remove_unreferenced()
        return collection

    def close(self) -> None:
        """Drop the write lock (pending changes are discarded) and the database connection."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def writable(self) -> bool:
        return self._lock_file is not None

    # ---- reading ------------------------------------------------------------------------
    def snapshot(self) -> Segments:
        """The newest committed generation as searchable segments (reloaded when it changed)."""
        if self._legacy is not None:
            return Segments.of(self._legacy)
        for attempt in range(5):
            point = self.store.latest_commit()
            if self._snapshot is not None and self._snapshot.generation == point["generation"]:
                return self._snapshot
            try:
                with self._mutex:
                    self._snapshot = self._load(point)
                return self._snapshot
            except (FileNotFoundError, IndexFormatError):
                if attempt == 4:
                    raise
                time.sleep(0.05)  # a writer replaced the generation while we opened it: take the next one
        raise AssertionError("unreachable")

    def _load(self, point: Mapping[str, Any]) -> Segments:
        vocab = self.vocab(point["vocab_size"])
        indexes, deleted = [], []
        for seg in point["segments"]:
            name = seg["name"]
            if name not in self._segments:
                self._segments[name] = SparseIndex.load(self.path / "segments" / name)
            indexes.append(self._segments[name])
            dfile = seg.get("deletes")
            if dfile and dfile not in self._deletes:
                self._deletes[dfile] = storage.load_array(self.path / "deletes", dfile.removesuffix(".npy"), mmap=False)
            deleted.append(self._deletes[dfile] if dfile else None)
        settings = {"model": self.settings.get("model"), "encoder": self.settings.get("encoder", {}), "dense": self.settings.get("dense")}
        snapshot = Segments(indexes, deleted, vocab, settings, generation=int(point["generation"]))
        snapshot.names = [seg["name"] for seg in point["segments"]]  # type: ignore[attr-defined]
        return snapshot

    def vocab(self, size: int | None = None) -> list[str]:
        """The vocabulary (its first ``size`` terms: what a generation knew)."""
        if self._vocab is None or (size is not None and len(self._vocab) < size):
            vocab = storage.load_json(self.path, "vocab")
            if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab) or len(vocab) < (size or 0):
                raise IndexFormatError(f"{self.path / 'vocab.json'} is damaged: not the {size or ''} terms its commits name")
            self._vocab = vocab
        if size is None or size == len(self._vocab):
            return self._vocab
        return self._vocab[:size]

    def get(self, doc_id: str) -> StoredDoc | None:
        """The committed live document ``doc_id`` (None if there is none)."""
        if self.store is None:
            return None
        return self.store.get(doc_id)

    def fields(self, rows: np.ndarray, snapshot: Segments, names: Sequence[str], snippet: int | None = None) -> list[dict[str, Any]]:
        """Stored fields of hits (global rows of ``snapshot``); empty for a format-1 index."""
        if self.store is None:
            return [{} for _ in rows]
        places = [(snapshot.names[s], r) for s, r in (snapshot.locate(int(row)) for row in rows)]  # type: ignore[attr-defined]
        docs = self.store.at(places)
        return [d.fields(names, snippet) if d is not None else {} for d in docs]

    def filter_masks(self, flt: Mapping[str, Any], snapshot: Segments) -> list[np.ndarray]:
        """One mask per segment of the rows whose metadata match ``flt``."""
        flt = check_filter(flt)
        if self.store is None:
            raise DataError("this is a format-1 index: it stores no metadata to filter on (upgrade it with `lsr upgrade`)")
        masks = []
        for name, ix in zip(snapshot.names, snapshot.indexes):  # type: ignore[attr-defined]
            if name not in self._columns:
                self._columns[name] = Columns(self.store.metadata(name), ix.num_docs)
            masks.append(evaluate(flt, self._columns[name]))
        return masks

    def info(self) -> dict[str, Any]:
        snap = self.snapshot()
        if self._legacy is not None:
            return {**self._legacy.info(), "generation": None, "segments": None, "deleted_docs": 0}
        segs = [{"name": n, "docs": ix.num_docs, "deleted": int(d.sum()) if d is not None else 0}
                for n, ix, d in zip(snap.names, snap.indexes, snap.deleted)]  # type: ignore[attr-defined]
        return {
            "path": str(self.path), "format_version": self.settings["format_version"], "generation": snap.generation,
            "model": self.settings.get("model"), "encoder": self.settings.get("encoder"), "settings": self.settings["index"],
            "approx": self.settings.get("approx"), "dense": self.settings.get("dense"),
            "segments": segs, "num_docs": snap.num_docs, "deleted_docs": sum(s["deleted"] for s in segs),
            "vocab_size": len(snap.vocab),
            **{key: sum(ix.manifest["stats"][key] for ix in snap.indexes) for key in ("num_postings", "raised_postings")},
            "max_quantization_error": max((ix.manifest["stats"]["max_quantization_error"] for ix in snap.indexes), default=0.0), "pending": {"docs": len(self._pending.docs), "deletes": len(self._pending.deletes)},
            "bytes": sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file()),
        }

    # ---- writing ------------------------------------------------------------------------
    def _writer(self) -> None:
        if not self.writable:
            raise LsrError(f"{self.path} is open read-only: open it with writable=True to change it")

    def add(self, docs: Iterable[Document | Mapping[str, Any]], *, upsert: bool = False) -> int:
        """Buffer documents for the next commit; all are checked first, so a bad one adds none.

        Without ``upsert`` an id that is already live (or buffered) is an error; with it, the
        new version replaces the old at the commit. Returns the number buffered.
        """
        self._writer()
        parsed = [d if isinstance(d, Document) else Document.parse(d, f"document {i}") for i, d in enumerate(docs)]
        ids = [d.id for d in parsed]
        seen: dict[str, int] = {}
        for i, doc_id in enumerate(ids):
            if doc_id in seen:
                raise DataError(f"document {i}: id {doc_id!r} repeats document {seen[doc_id]} of this batch")
            seen[doc_id] = i
        needs_model = [i for i, d in enumerate(parsed) if d.vector is None]
        if needs_model and not self.settings.get("model"):
            raise DataError(f"document {needs_model[0]}: this collection has no model to encode text; give 'vector'")
        vectors_given = [i for i, d in enumerate(parsed) if d.vector is not None]
        if vectors_given and self.settings.get("model") and isinstance(self.encoder, BM25Encoder):
            raise DataError(f"document {vectors_given[0]}: a BM25 collection weighs texts against its statistics; give 'text', not 'vector'")
        if self.settings.get("dense") and any(d.vector is not None for d in parsed):
            raise DataError("this collection has a dense part: documents need text (its dense model encodes it)")
        with self._mutex:
            if not upsert:
                taken = [i for i in ids if i in self._pending.docs]
                taken += list(self.store.live([i for i in ids if i not in self._pending.deletes]).keys())
                if taken:
                    raise DataError(f"document id {taken[0]!r} exists already (use upsert to replace it)")
            for doc in parsed:
                self._pending.docs[doc.id] = doc
        return len(parsed)

    def upsert(self, docs: Iterable[Document | Mapping[str, Any]]) -> int:
        return self.add(docs, upsert=True)

    def delete(self, ids: Iterable[str]) -> dict[str, list[str]]:
        """Buffer deletions for the next commit; returns ``{"deleted": [...], "not_found": [...]}``
        (ids neither live nor buffered are reported, never silently ignored)."""
        self._writer()
        ids = list(dict.fromkeys(str(i) for i in ids))
        with self._mutex:
            live = self.store.live(ids)
            deleted, missing = [], []
            for doc_id in ids:
                found = False
                if self._pending.docs.pop(doc_id, None) is not None:
                    found = True
                if doc_id in live and doc_id not in self._pending.deletes:
                    self._pending.deletes.add(doc_id)
                    found = True
                (deleted if found else missing).append(doc_id)
        return {"deleted": deleted, "not_found": missing}

    @property
    def pending(self) -> int:
        """Buffered documents and deletions not yet committed."""
        return len(self._pending.docs) + len(self._pending.deletes)

    def commit(self, *, merge: bool = True) -> int:
        """Make every buffered change durable as one new generation; returns it.

        On an error (a full disk, a permission denied) the previous generation stays the
        current one, untouched, and the buffered changes stay buffered.
        """
        self._writer()
        with self._mutex:
            point = self.store.latest_commit()
            published = bool(self._pending)
            if self._pending:
                point = self._publish(point, self._pending)
                self._pending = _Pending()
            if merge:
                try:
                    point = self._merge_tiers(point)
                except (OSError, sqlite3.Error) as e:
                    if not published:
                        raise
                    # the changes are durable already: a failed merge (a full disk) must not report them
                    # lost; it is retried by the next commit
                    log.warning("%s: merge after commit %s failed, retried at the next commit: %s", self.path, point["generation"], e)
                    point = self.store.latest_commit()
            self._remove_unreferenced()
            return int(point["generation"])

    def optimize(self, max_segments: int = 1) -> int:
        """Commit, then merge adjacent segments until at most ``max_segments`` remain."""
        gen = self.commit(merge=False)
        with self._mutex:
            point = self.store.latest_commit()
            # one segment still holding deletions is rewritten too: its quantization scale and (BM25)
            # statistics include the deleted rows, so it would not equal a fresh build
            while len(point["segments"]) > max(1, max_segments) or (
                    max_segments <= 1 and len(point["segments"]) == 1 and point["segments"][0].get("deletes")):
                n = len(point["segments"]) - max(1, max_segments) + 1
                point = self._merge(point, 0, n)
            self._remove_unreferenced()
            return int(point["generation"]) if point["segments"] else gen

    def update_segment(self, index: SparseIndex) -> None:
        """Rewrite a segment with the same documents and new derived parts (an approx structure
        added, tuned knobs), in place; later segments get the same approx settings."""
        self._writer()
        if index.path is None or index.path.parent != self.path / "segments":
            raise LsrError(f"{index.path} is not a segment of {self.path}")
        index.save(index.path)
        self._segments.pop(index.path.name, None)
        self._snapshot = None
        if index.approx is not None and self.settings.get("approx") is None:
            self.settings["approx"] = index.manifest["approx"]["settings"]
            _write_json(self.path / SETTINGS_FILE, self.settings)

    # ---- the commit protocol -------------------------------------------------------------
    def _publish(self, point: dict[str, Any], pending: _Pending) -> dict[str, Any]:
        gen = int(point["generation"]) + 1
        snap = self._load(point)
        live = self.store.live(list(pending.deletes | set(pending.docs)))
        by_segment: dict[str, list[int]] = {}
        for doc_id, (segment, row) in live.items():
            by_segment.setdefault(segment, []).append(row)
        docs = list(pending.docs.values())
        segments = [dict(s) for s in point["segments"]]
        added_rows: list[tuple] = []
        vocab_size = point["vocab_size"]
        if docs:
            name = f"seg-{gen:06d}-{uuid.uuid4().hex[:6]}"
            vectors, lengths, vocab_size = self._encode(docs, snap, by_segment)
            index = self._build_segment(vectors, [d.id for d in docs])
            if self.settings.get("dense"):
                self._add_dense(index, [d.contents for d in docs], [d.id for d in docs])
            order = {d: r for r, d in enumerate(index.doc_ids)}  # reordering may permute rows
            index.save(self.path / "segments" / name)
            segments.append({"name": name, "docs": len(docs), "deletes": None})
            added_rows = [(name, order[d.id], d.id, d.title, d.text, json.dumps(d.metadata), int(lengths[i]))
                          for i, d in enumerate(docs)]
        for seg in segments:
            rows = by_segment.get(seg["name"])
            if rows:
                seg["deletes"] = self._write_deletes(seg, rows, gen)
        new_point = {"generation": gen, "segments": segments, "vocab_size": vocab_size}
        self.store.commit(new_point, added_rows, by_segment, [], _now())
        return new_point

    def _write_deletes(self, seg: dict[str, Any], rows: Sequence[int], gen: int) -> str:
        """A new bitmap file: the segment's deletions so far plus ``rows``; fsynced, renamed in."""
        old = seg.get("deletes")
        dead = np.load(self.path / "deletes" / old).copy() if old else np.zeros(seg["docs"], dtype=bool)
        dead[np.asarray(rows, dtype=np.int64)] = True
        name = f"{seg['name']}.g{gen}.npy"
        storage.replace_file(self.path / "deletes" / name, lambda f: np.save(f, dead))
        seg["deleted"] = int(dead.sum())
        return name

    def _encode(self, docs: Sequence[Document], snap: Segments, deleting: Mapping[str, list[int]]):
        """Vectors of new documents over the (possibly grown) vocabulary, their BM25 lengths
        (0 otherwise), and the new vocabulary size; new terms are appended to vocab.json."""
        vocab = list(self.vocab())
        term_id = {t: i for i, t in enumerate(vocab)}
        n_before = len(vocab)
        lengths = np.zeros(len(docs), np.int64)
        encoder = self.encoder if self.settings.get("model") else None
        if isinstance(encoder, BM25Encoder):
            indptr, idx, tf, lengths = encoder.term_frequencies([d.contents for d in docs], vocab, term_id)
            df, doc_count, total = self._bm25_stats(snap, deleting, len(vocab))
            df += np.bincount(idx, minlength=len(vocab))
            weights, _ = bm25_weights(indptr, idx, tf, lengths, len(vocab), encoder.k1, encoder.b, encoder.norms,
                                      collection=(df, doc_count + int((lengths > 0).sum()), total + int(lengths.sum())))
            vectors = SparseVectors(indptr, idx, weights, vocab)
        else:
            rows: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0, np.int32), np.zeros(0, np.float32))] * len(docs)
            texts = [i for i, d in enumerate(docs) if d.vector is None]
            if texts:
                enc = encoder.encode_documents([docs[i].contents for i in texts])
                mapping = None if list(enc.vocab) == vocab else np.array([term_id.get(t, -1) for t in enc.vocab], np.int64)
                for j, i in enumerate(texts):
                    t, w = enc.row(j)
                    if mapping is not None:
                        t = mapping[t]
                        t, w = t[t >= 0], w[t >= 0]
                    rows[i] = (t.astype(np.int32), w)
            for i, d in enumerate(docs):
                if d.vector is not None:
                    rows[i] = self._vector_row(d, vocab, term_id, i)
            vectors = SparseVectors(offsets([len(t) for t, _ in rows]), concat([t for t, _ in rows], np.int32),
                                    concat([w for _, w in rows], np.float32), vocab)
        if len(vocab) > n_before:
            _write_json(self.path / "vocab.json", vocab)
            self._vocab = vocab
        return vectors, lengths, len(vocab)

    def _vector_row(self, doc: Document, vocab: list[str], term_id: dict[str, int], i: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = []
        for token, weight in doc.vector.items():  # type: ignore[union-attr]
            t = term_id.get(token)
            if t is None:
                if not self.settings.get("growing_vocab"):
                    raise DataError(f"document {i} ({doc.id!r}): term {token!r} is not in the model's vocabulary")
                t = term_id[token] = len(vocab)
                vocab.append(token)
            if weight > 0:
                pairs.append((t, float(weight)))
        pairs.sort()
        return np.array([p[0] for p in pairs], np.int32), np.array([p[1] for p in pairs], np.float32)

    def _bm25_stats(self, snap: Segments, deleting: Mapping[str, list[int]], vocab_size: int) -> tuple[np.ndarray, int, int]:
        """Document frequencies, documents with a term and total terms of the live documents
        that stay live: the collection BM25 weighs new documents against."""
        df, _ = live_document_frequencies(snap, vocab_size, deleting)
        doc_count, total = self.store.length_stats(deleting)
        return df, doc_count, total

    def _add_dense(self, index: SparseIndex, texts: Sequence[str], ids: Sequence[str]) -> None:
        dense = self.settings["dense"]
        add_dense(index, self.dense_encoder.encode_documents(texts, show_progress_bar=False), ids, model=dense["model"],
                  encoder_settings=self.dense_encoder.settings(), **dense.get("options", {}))

    def _build_segment(self, vectors: SparseVectors, ids: Sequence[str]) -> SparseIndex:
        """A new segment with the collection's encoder record and build settings."""
        approx = ApproxSettings(**self.settings["approx"]) if self.settings.get("approx") else False
        return SparseIndex.build(vectors, ids, model=self.settings.get("model"), encoder_settings=self.settings.get("encoder"),
                                 **self.settings["index"], approx=approx)

    # ---- merges --------------------------------------------------------------------------
    def _merge_tiers(self, point: dict[str, Any]) -> dict[str, Any]:
        """Merge runs of MERGE_FACTOR adjacent segments of one size tier, until none is left."""
        while True:
            tiers = [int(np.log(max(1, s["docs"] - s.get("deleted", 0))) / np.log(MERGE_FACTOR)) for s in point["segments"]]
            run = next((i for i in range(len(tiers) - MERGE_FACTOR + 1) if len(set(tiers[i : i + MERGE_FACTOR])) == 1), None)
            if run is None:
                return point
            point = self._merge(point, run, MERGE_FACTOR)

    def _merge(self, point: dict[str, Any], start: int, n: int) -> dict[str, Any]:
        """Replace segments ``start .. start+n`` by one holding their live documents in order:
        exactly the segment a fresh build of those documents would give."""
        gen = int(point["generation"]) + 1
        snap = self._load(point)
        chosen = point["segments"][start : start + n]
        rows_v: list[SparseVectors] = []
        ids: list[str] = []
        places: list[tuple[str, int]] = []
        dense_rows: list[np.ndarray] = []
        for offset, seg in enumerate(chosen):
            ix, dead = snap.indexes[start + offset], snap.deleted[start + offset]
            keep = np.flatnonzero(~dead) if dead is not None else np.arange(ix.num_docs)
            fwd = SparseVectors(np.asarray(ix.forward_indptr), np.asarray(ix.forward_terms), np.asarray(ix.forward_weights), ix.vocab)
            rows_v.append(fwd.take(keep))
            ids += [ix.doc_ids[r] for r in keep]
            places += [(seg["name"], int(r)) for r in keep]
            if ix.dense is not None:
                dense_rows.append(np.asarray(ix.dense.vectors)[keep])
        stored = self.store.at(places)
        vocab = self.vocab(point["vocab_size"])
        merged = SparseVectors.concat([SparseVectors(v.indptr, v.indices, v.values, vocab) for v in rows_v]) if rows_v else None
        if isinstance(self.encoder if self.settings.get("model") else None, BM25Encoder):
            merged = self._reweigh_bm25(merged, stored, snap, chosen, point)
        name = f"seg-{gen:06d}-{uuid.uuid4().hex[:6]}"
        index = self._build_segment(merged, ids)
        if dense_rows:
            dense = self.settings["dense"]
            add_dense(index, np.concatenate(dense_rows), ids, model=dense["model"], encoder_settings=snap.indexes[start].dense.settings.get("encoder"),
                      **dense.get("options", {}))
        order = {d: r for r, d in enumerate(index.doc_ids)}
        index.save(self.path / "segments" / name)
        added = [(name, order[d.id], d.id, d.title, d.text, json.dumps(d.metadata), d.length) for d in stored]
        segments = point["segments"][:start] + [{"name": name, "docs": len(ids), "deletes": None}] + point["segments"][start + n :]
        new_point = {"generation": gen, "segments": segments, "vocab_size": point["vocab_size"]}
        self.store.commit(new_point, added, {}, [s["name"] for s in chosen], _now())
        return new_point

    def _reweigh_bm25(self, merged: SparseVectors, stored: Sequence[StoredDoc], snap: Segments, chosen, point) -> SparseVectors:
        """BM25 weights of merged documents recomputed from their stored text against the
        statistics of the live collection now (a merge of everything equals a fresh build)."""
        encoder: BM25Encoder = self.encoder  # type: ignore[assignment]
        vocab = list(self.vocab(point["vocab_size"]))
        term_id = {t: i for i, t in enumerate(vocab)}
        texts = [f"{d.title} {d.text}".strip() if d.title else d.text for d in stored]
        indptr, idx, tf, lengths = encoder.term_frequencies(texts, vocab, term_id)
        if len(vocab) != point["vocab_size"]:
            raise LsrError("the stored texts hold terms the vocabulary lacks: the collection's analyzer changed")
        others = {s["name"] for s in chosen}
        df, doc_count, total = self._bm25_stats(snap, {n: list(range(ix.num_docs)) for n, ix in zip(snap.names, snap.indexes) if n in others}, len(vocab))  # type: ignore[attr-defined]
        df += np.bincount(idx, minlength=len(vocab))
        weights, _ = bm25_weights(indptr, idx, tf, lengths, len(vocab), encoder.k1, encoder.b, encoder.norms,
                                  collection=(df, doc_count + int((lengths > 0).sum()), total + int(lengths.sum())))
        return SparseVectors(indptr, idx, weights, merged.vocab)

    def _remove_unreferenced(self) -> None:
        """Delete segment and bitmap files the current commit does not name (left by a crashed
        or superseded commit). Readers that opened them keep their mappings (POSIX)."""
        point = self.store.latest_commit()
        keep_segments = {s["name"] for s in point["segments"]}
        keep_deletes = {s["deletes"] for s in point["segments"] if s.get("deletes")}
        for entry in (self.path / "segments").iterdir():
            if entry.name not in keep_segments:
                shutil.rmtree(entry, ignore_errors=True)
        for entry in (self.path / "deletes").iterdir():
            if entry.name not in keep_deletes:
                entry.unlink(missing_ok=True)
        for entry in self.path.glob(".*.tmp-*"):  # vocab.json / collection.json replacements cut short by a crash
            if not entry.name.split(".tmp-", 1)[1].startswith(f"{os.getpid()}-"):  # the lock holder's own may be in use
                entry.unlink(missing_ok=True)
        for name in list(self._segments):
            if name not in keep_segments:
                del self._segments[name]
                self._columns.pop(name, None)

    # ---- encoders ------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The model that encodes document texts (and, through the retriever, queries)."""
        if self._encoder is None:
            model = self.settings.get("model")
            if not model:
                raise DataError("this collection has no model: documents and queries come as vectors")
            self._encoder = load_encoder(model, vocab=self.vocab(), **self.settings.get("encoder", {}))
        return self._encoder

    @property
    def dense_encoder(self) -> Encoder:
        if self._dense_encoder is None:
            self._dense_encoder = load_encoder(self.settings["dense"]["model"], dense=True)
        return self._dense_encoder


def live_document_frequencies(snap: Segments, vocab_size: int | None = None,
                              deleting: Mapping[str, Sequence[int]] | None = None) -> tuple[np.ndarray, int]:
    """Per term, the live documents of ``snap`` whose vector holds it, and the number of live
    documents (minus the rows ``deleting`` names per segment): BM25's statistics for new
    documents and the inference-free query encoder's IDF, read from the forward indexes, so
    they follow every add, delete and merge without being stored twice."""
    df = np.zeros(len(snap.vocab) if vocab_size is None else vocab_size, np.int64)
    n_docs = 0
    names = getattr(snap, "names", None) or [None] * len(snap.indexes)
    for name, ix, dead in zip(names, snap.indexes, snap.deleted):
        keep = np.ones(ix.num_docs, bool) if dead is None else ~dead
        if deleting and name in deleting:
            keep[np.asarray(deleting[name], np.int64)] = False
        n_docs += int(keep.sum())
        rows = np.repeat(keep, np.diff(np.asarray(ix.forward_indptr)))
        df[: len(ix.vocab)] += np.bincount(np.asarray(ix.forward_terms)[rows], minlength=len(ix.vocab))
    return df, n_docs


def upgrade(path: str | os.PathLike) -> Path:
    """Turn a format-1 index directory into a one-segment collection in place (same documents,
    same scores; no texts or metadata are stored, as format 1 has none)."""
    index = SparseIndex.load(path)
    if str(index.manifest.get("model") or "").lower() == "bm25":
        raise IndexFormatError(f"{path} is a format-1 BM25 index: it stores no texts or lengths, so a collection could not keep "
                               f"its BM25 statistics right; rebuild it from the corpus (`lsr index --corpus C --model bm25 --out {path}`). "
                               "As it is, it still opens read-only")
    approx = ApproxSettings(**index.manifest["approx"]["settings"]) if "approx" in index.manifest else False
    docs = [Document(d) for d in index.doc_ids]
    return Collection.build(path, index, docs, growing_vocab=index.manifest.get("model") in (None, "bm25"), approx=approx,
                            dense={"model": index.dense.settings["model"], "options": {"kind": index.dense.settings["kind"]}}
                            if index.dense is not None and index.dense.settings.get("model") else None)


def _settings(model: str | None, encoder: Mapping[str, Any], growing_vocab: bool, index: Mapping[str, Any],
              approx: bool | ApproxSettings, dense: Mapping[str, Any] | None,
              query: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What collection.json records: how documents and queries are encoded, segments built."""
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "lsr_version": __version__, "created": _now(),
        "model": model, "encoder": dict(encoder), "growing_vocab": growing_vocab, "index": dict(index),
        "approx": (asdict(approx) if isinstance(approx, ApproxSettings) else asdict(ApproxSettings())) if approx else None,
        "dense": dict(dense) if dense else None, "query": query_defaults(query, model),
    }


def query_defaults(query: Mapping[str, Any] | None, model: str | None = None) -> dict[str, Any]:
    """How a collection encodes text queries unless a search says otherwise: ``encoder`` (one of
    :data:`lsr.encoders.inference_free.QUERY_ENCODERS`, default ``model``), ``expansion``
    (False: a query keeps only its own tokens' weights) and ``weighting`` (False: binary)."""
    from lsr.encoders.inference_free import MODEL, check_query_encoder

    query = dict(query or {})
    unknown = set(query) - {"encoder", "expansion", "weighting"}
    if unknown:
        raise ValueError(f"unknown query setting(s) {sorted(unknown)}: encoder, expansion, weighting")
    out = {"encoder": check_query_encoder(query.get("encoder") or MODEL, model), "expansion": True, "weighting": True}
    for key in ("expansion", "weighting"):
        if query.get(key) is not None:
            if not isinstance(query[key], bool):
                raise ValueError(f"query {key} must be true or false, got {query[key]!r}")
            out[key] = query[key]
    return out


def _write_new(path: Path, settings: Mapping[str, Any], vocab: Sequence[str], index: SparseIndex | None,
               docs: Sequence[Document], lengths: Sequence[int] | None = None) -> None:
    """A collection directory at ``path``: generation 1 holding ``index`` (0 and empty without
    one); collection.json comes last, so a directory that has it is complete."""
    for sub in ("segments", "deletes"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    _write_json(path / "vocab.json", list(vocab))
    store = DocStore(path / "docs.sqlite")
    rows: list[tuple] = []
    segments = []
    if index is not None:
        name = "seg-000001-000000"
        index.save(path / "segments" / name)
        by_id = {d.id: (d, lengths[i] if lengths is not None else 0) for i, d in enumerate(docs)}
        rows = [(name, r, d, by_id[d][0].title, by_id[d][0].text, json.dumps(by_id[d][0].metadata), int(by_id[d][1]))
                for r, d in enumerate(index.doc_ids)]
        segments = [{"name": name, "docs": index.num_docs, "deletes": None}]
    store.commit({"generation": int(index is not None), "segments": segments, "vocab_size": len(vocab)}, rows, {}, [], _now())
    store.close()
    _write_json(path / SETTINGS_FILE, settings)


def _acquire_lock(path: Path):
    """The collection's write lock (flock: released by the OS when the holder dies)."""
    f = open(path / "write.lock", "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise LsrError(f"{path} is being written by {holder}: one writer at a time") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} since {_now()}")
    f.flush()
    return f


def _write_json(path: Path, obj: Any) -> None:
    storage.replace_file(path, lambda f: f.write(json.dumps(obj, ensure_ascii=False).encode("utf-8")))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
