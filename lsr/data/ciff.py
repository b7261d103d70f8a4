"""CIFF, the Common Index File Format of PISA, Anserini, JASS and BMP (``osirrc/ciff``).

A CIFF file is a sequence of length-delimited protobuf messages: one ``Header``, then
``num_postings_lists`` ``PostingsList`` messages (term, df, cf, postings of d-gap ``docid`` and
``tf``), then ``num_doc_records`` ``DocRecord`` messages (docid, collection docid, doclength).
Learned sparse indexes carry their integer impacts in ``tf``. The small protobuf codec is ours:
writing encodes every posting of the collection in one vectorized pass; reading is a plain
decoder that accepts any valid encoding (fields in any order, defaults omitted or present,
unknown fields skipped), so files of other writers import too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from lsr.data.vectors import SparseVectors
from lsr.errors import DataError

VERSION = 1
# The JSON line that lsr appends to the header's description: how to turn impacts back into weights.
META_PREFIX = "lsr-meta: "
_MAX_INT32 = 2**31 - 1


@dataclass(frozen=True)
class CiffHeader:
    version: int = VERSION
    num_postings_lists: int = 0
    num_doc_records: int = 0
    total_postings_lists: int = 0
    total_docs: int = 0
    total_terms_in_collection: int = 0
    average_doclength: float = 0.0
    description: str = ""

    @property
    def meta(self) -> dict:
        """What an lsr export recorded (scale, model, encoder settings); {} for other writers."""
        for line in self.description.splitlines():
            if line.startswith(META_PREFIX):
                try:
                    meta = json.loads(line[len(META_PREFIX):])
                except json.JSONDecodeError:
                    return {}
                return meta if isinstance(meta, dict) else {}
        return {}


@dataclass(frozen=True)
class Ciff:
    """A CIFF file read back: documents in docid order with their ``tf`` values as rows."""

    header: CiffHeader
    doc_ids: list[str]
    tfs: SparseVectors  # doc rows over the file's terms, in file order; values are the integer tfs
    doclengths: np.ndarray  # int64


# ---- writing ------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # protobuf's two's complement for negative int32/int64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varint bytes of non-negative int32s: a (n, 5) byte matrix and each value's length (1..5)."""
    v = values.astype(np.uint64)
    groups = (v[:, None] >> (7 * np.arange(5, dtype=np.uint64))) & np.uint64(0x7F)
    length = 1 + (v[:, None] >= (np.uint64(1) << (7 * np.arange(1, 5, dtype=np.uint64)))).sum(axis=1)
    cont = np.arange(5)[None, :] < (length[:, None] - 1)
    return (groups | (cont.astype(np.uint64) << np.uint64(7))).astype(np.uint8), length


def _posting_bytes(gaps: np.ndarray, tfs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every ``Posting`` as a field-4 sub-message (tag, length, docid?, tf?), concatenated;
    returns the bytes and each posting's byte count. Zero fields are omitted, as proto3 does."""
    g, glen = _varints(gaps)
    t, tlen = _varints(tfs)
    has_g, has_t = gaps != 0, tfs != 0
    body = has_g * (1 + glen) + has_t * (1 + tlen)  # at most 12 bytes: its length is one byte
    n = len(gaps)
    cells = np.zeros((n, 14), dtype=np.uint8)
    keep = np.zeros((n, 14), dtype=bool)
    cells[:, 0], cells[:, 1] = 0x22, body
    keep[:, :2] = True
    cells[:, 2], keep[:, 2] = 0x08, has_g
    cells[:, 3:8], keep[:, 3:8] = g, has_g[:, None] & (np.arange(5)[None, :] < glen[:, None])
    cells[:, 8], keep[:, 8] = 0x10, has_t
    cells[:, 9:14], keep[:, 9:14] = t, has_t[:, None] & (np.arange(5)[None, :] < tlen[:, None])
    return cells[keep], 2 + body


def _field(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _message(fields: list[tuple[int, object]]) -> bytes:
    """A message of int (varint), float (double), str or bytes (length-delimited) fields;
    zero and empty values are omitted."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, float):
            if value != 0.0:
                out += _field(number, 1) + np.float64(value).tobytes()
        elif isinstance(value, int):
            if value != 0:
                out += _field(number, 0) + _varint(value)
        else:
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            if data:
                out += _field(number, 2) + _varint(len(data)) + data
    return bytes(out)


def write_ciff(path: str | Path, doc_ids: list[str], impacts: SparseVectors, *, description: str = "",
               doclengths: np.ndarray | None = None) -> CiffHeader:
    """Write documents (row ``i`` is CIFF docid ``i``) with non-negative integer ``impacts`` as
    a CIFF file; terms are written in UTF-8 byte order (Lucene's), terms without postings are
    left out. ``doclengths`` defaults to each document's sum of impacts (the length of the
    pseudo-document that repeats each term ``impact`` times, as Anserini indexes impacts)."""
    if len(doc_ids) != len(impacts):
        raise ValueError(f"{len(doc_ids)} ids for {len(impacts)} rows")
    values = np.asarray(impacts.values)
    if values.size and (values.min() < 0 or values.max() > _MAX_INT32 or not np.array_equal(values, np.rint(values))):
        raise DataError("CIFF impacts must be integers in 0..2^31-1")
    n_docs, vocab = len(doc_ids), list(impacts.vocab)
    by_doc = sp.csr_matrix((values.astype(np.int64), np.asarray(impacts.indices).copy(), np.asarray(impacts.indptr).copy()),
                           shape=(n_docs, len(vocab)))
    by_doc.eliminate_zeros()
    by_term = by_doc.tocsc()
    by_term.sort_indices()
    lengths = np.asarray(by_doc.sum(axis=1)).ravel().astype(np.int64) if doclengths is None else np.asarray(doclengths, np.int64)
    docs, tfs, indptr = by_term.indices.astype(np.int64), by_term.data.astype(np.int64), by_term.indptr.astype(np.int64)
    gaps = docs.copy()
    inner = np.ones(len(docs), dtype=bool)
    inner[indptr[:-1][indptr[:-1] < len(docs)]] = False  # the first posting of a list is absolute
    gaps[1:] -= np.where(inner[1:], docs[:-1], 0)
    posting_bytes, sizes = _posting_bytes(gaps, tfs)
    byte_at = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)[indptr]
    df = np.diff(indptr)
    cf = np.asarray(by_term.sum(axis=0)).ravel()
    terms = [t for t in sorted(range(len(vocab)), key=lambda t: vocab[t].encode("utf-8")) if df[t] > 0]
    header = CiffHeader(
        num_postings_lists=len(terms), num_doc_records=n_docs, total_postings_lists=len(terms), total_docs=n_docs,
        total_terms_in_collection=int(lengths.sum()), average_doclength=float(lengths.mean()) if n_docs else 0.0,
        description=description,
    )
    with open(path, "wb") as f:
        _write_delimited(f, _message([(1, header.version), (2, header.num_postings_lists), (3, header.num_doc_records),
                                      (4, header.total_postings_lists), (5, header.total_docs),
                                      (6, header.total_terms_in_collection), (7, header.average_doclength), (8, description)]))
        for t in terms:
            head = _message([(1, vocab[t]), (2, int(df[t])), (3, int(cf[t]))])
            _write_delimited(f, head + posting_bytes[byte_at[t]:byte_at[t + 1]].tobytes())
        for d, doc_id in enumerate(doc_ids):
            _write_delimited(f, _message([(1, d), (2, str(doc_id)), (3, int(lengths[d]))]))
    return header


def _write_delimited(f, message: bytes) -> None:
    f.write(_varint(len(message)))
    f.write(message)


# ---- reading ------------------------------------------------------------------------------
class _Reader:
    """Protobuf wire-format decoding over one buffer; errors name the file and byte offset."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.source = data, source

    def fail(self, pos: int, what: str) -> DataError:
        return DataError(f"{self.source}: byte {pos}: {what}")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        data, shift, n = self.data, 0, 0
        while True:
            if pos >= end:
                raise self.fail(pos, "truncated varint")
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                return n, pos
            shift += 7
            if shift > 63:
                raise self.fail(pos, "varint longer than 10 bytes")

    def fields(self, pos: int, end: int):
        """Yield (field number, value, position) of a message; length-delimited values come
        as (start, stop) pairs, varints as ints (int32/int64 negatives decoded), doubles as floats."""
        while pos < end:
            at = pos
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = self.varint(pos, end)
                if value >= 1 << 63:
                    value -= 1 << 64
            elif wire == 2:
                size, pos = self.varint(pos, end)
                if pos + size > end:
                    raise self.fail(at, f"field {number} runs past the end of its message")
                value, pos = (pos, pos + size), pos + size
            elif wire == 1:
                if pos + 8 > end:
                    raise self.fail(at, "truncated double")
                value, pos = float(np.frombuffer(self.data, np.float64, 1, pos)[0]), pos + 8
            elif wire == 5:
                if pos + 4 > end:
                    raise self.fail(at, "truncated fixed32")
                value, pos = None, pos + 4
            else:
                raise self.fail(at, f"unsupported wire type {wire} (field {number})")
            yield number, value, at

    def text(self, span: tuple[int, int], pos: int) -> str:
        try:
            return self.data[span[0]:span[1]].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(pos, "a string is not valid UTF-8") from None

    def posting_starts(self, pos: int, end: int) -> list[int] | None:
        """Offsets of the postings filling ``pos..end`` when they are laid out as canonical
        writers do (each a field-4 message under 128 bytes), else None. The one sequential step
        of the fast path: each posting's length locates the next."""
        data, starts, p = self.data, [], pos
        while p < end:
            if data[p] != 0x22 or p + 1 >= end or data[p + 1] >= 0x80:
                return None
            starts.append(p)
            p += 2 + data[p + 1]
        return starts if p == end else None

    def decode_postings(self, starts: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """d-gaps, tfs and a validity flag of the postings at ``starts`` (inside the byte
        ``regions``, rows of (start, end) that :meth:`posting_starts` accepted), all decoded at
        once with numpy: every byte of such regions belongs to a varint. A posting is valid when
        its body is docid (field 1) then tf (field 2), either omitted, and nothing else."""
        n = len(self.data)
        edge = np.zeros(n + 1, np.int64)
        np.add.at(edge, regions[:, 0], 1)
        np.add.at(edge, regions[:, 1], -1)
        inside = np.cumsum(edge[:-1]) > 0
        b = np.frombuffer(self.data, np.uint8)[inside].astype(np.int64)
        s = (np.cumsum(inside) - 1)[starts]  # offsets in b
        last = b < 0x80
        first = np.concatenate([[True], last[:-1]])
        varint = np.cumsum(first) - 1
        begins = np.flatnonzero(first)
        shift = 7 * (np.arange(len(b)) - begins[varint])
        values = np.bincount(varint, weights=(b & 0x7F) << np.minimum(shift, 56)).astype(np.int64)
        too_long = np.bincount(varint, weights=shift > 28).astype(bool)  # over 5 bytes: not an int32
        at = np.full(len(b) + 1, -1, np.int64)  # offset in b -> the varint starting there
        at[begins] = np.arange(len(values))
        ends = np.flatnonzero(last)
        stop = s + 2 + b[s + 1]
        gaps, tfs = np.zeros(len(s), np.int64), np.zeros(len(s), np.int64)
        ok, cursor = np.ones(len(s), bool), s + 2
        for tag, out in ((0x08, gaps), (0x10, tfs)):
            has = cursor < stop
            has[has] = b[cursor[has]] == tag
            value = at[np.minimum(cursor[has] + 1, len(b))]
            good = (value >= 0) & (cursor[has] + 1 < stop[has])
            good[good] &= ~too_long[value[good]]
            where = np.flatnonzero(has)
            ok[where[~good]] = False
            where, value = where[good], value[good]
            out[where] = values[value]
            cursor[where] = ends[value] + 1
        return gaps, tfs, ok & (cursor == stop)

    def delimited(self, pos: int, what: str) -> tuple[int, int]:
        if pos >= len(self.data):
            raise self.fail(pos, f"the file ends before {what}")
        size, start = self.varint(pos, len(self.data))
        if start + size > len(self.data):
            raise self.fail(pos, f"{what} runs past the end of the file")
        return start, start + size


def read_ciff(path: str | Path) -> Ciff:
    """Read a CIFF file (any conforming writer); structural errors raise DataError naming the
    file and byte offset: truncation, counts that disagree with the header, docids out of
    range or repeated, repeated terms, negative tfs, bytes after the last record."""
    path = Path(path)
    r = _Reader(path.read_bytes(), str(path))
    start, pos = r.delimited(0, "the header")
    h: dict = {}
    names = {1: "version", 2: "num_postings_lists", 3: "num_doc_records", 4: "total_postings_lists", 5: "total_docs",
             6: "total_terms_in_collection", 7: "average_doclength", 8: "description"}
    for number, value, at in r.fields(start, pos):
        if number == 8:
            h["description"] = r.text(value, at)
        elif number in names:
            h[names[number]] = value
    header = CiffHeader(**h)
    if header.num_postings_lists < 0 or header.num_doc_records < 0:
        raise r.fail(0, "negative counts in the header")
    vocab: list[str] = []
    seen: set[str] = set()
    # per postings list: its offset, message span, and either its posting offsets (decoded below,
    # all lists at once) or its (d-gaps, tfs) decoded field by field
    lists: list[tuple[int, int, int, list[int] | None, Any]] = []
    for t in range(header.num_postings_lists):
        start, end = r.delimited(pos, f"postings list {t + 1} of {header.num_postings_lists}")
        term, decoded, starts = "", ([], []), None
        for number, value, at in r.fields(start, end):
            if number == 1:
                term = r.text(value, at)
            elif number == 4:
                starts = r.posting_starts(at, end)
                if starts is None:
                    term, *decoded = _postings_by_field(r, start, end)
                break
        if term in seen:
            raise r.fail(pos, f"term {term!r} has a second postings list")
        seen.add(term)
        vocab.append(term)
        lists.append((pos, start, end, starts, decoded))
        pos = end
    fast = [i for i, entry in enumerate(lists) if entry[3]]
    if fast:
        counts = [len(lists[i][3]) for i in fast]
        gaps, tfs, ok = r.decode_postings(np.concatenate([lists[i][3] for i in fast]).astype(np.int64),
                                          np.array([(lists[i][3][0], lists[i][2]) for i in fast], np.int64))
        bounds = np.concatenate([[0], np.cumsum(counts)])
        for j, i in enumerate(fast):
            lo, hi = bounds[j], bounds[j + 1]
            o, start, end, starts, _ = lists[i]
            lists[i] = (o, start, end, starts, (gaps[lo:hi], tfs[lo:hi]) if ok[lo:hi].all() else _postings_by_field(r, start, end)[1:])
    lengths = np.array([len(entry[4][0]) for entry in lists], np.int64)
    gaps = np.concatenate([np.asarray(entry[4][0], np.int64) for entry in lists]) if lists else np.zeros(0, np.int64)
    vals = np.concatenate([np.asarray(entry[4][1], np.int64) for entry in lists]) if lists else np.zeros(0, np.int64)
    cols = np.repeat(np.arange(len(lists), dtype=np.int32), lengths)
    heads = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    is_head = np.zeros(len(gaps), bool)
    is_head[heads[lengths > 0]] = True
    prefix = np.concatenate([[0], np.cumsum(gaps)])
    rows = prefix[1:] - np.repeat(prefix[heads], lengths)  # docids: the d-gaps summed within each list
    for bad, what in (((gaps <= 0) & ~is_head) | (gaps < 0), "docids must ascend strictly (d-gaps > 0)"), (vals < 0, "negative tf"):
        if bad.any():
            t = int(cols[np.argmax(bad)])
            raise r.fail(lists[t][0], f"term {vocab[t]!r}: {what}")
    n_docs = header.num_doc_records
    if len(rows) and rows.max() >= n_docs:
        t = int(cols[np.argmax(rows >= n_docs)])
        raise r.fail(lists[t][0], f"term {vocab[t]!r}: docid {int(rows[np.argmax(rows >= n_docs)])} but the header counts {n_docs} documents")
    n = header.num_doc_records
    doc_ids: list[str | None] = [None] * n
    doclengths = np.zeros(n, dtype=np.int64)
    for i in range(n):
        start, end = r.delimited(pos, f"document record {i + 1} of {n}")
        docid, name, length = 0, "", 0
        for number, value, at in r.fields(start, end):
            if number == 1:
                docid = value
            elif number == 2:
                name = r.text(value, at)
            elif number == 3:
                length = value
        if not 0 <= docid < n or doc_ids[docid] is not None:
            raise r.fail(pos, f"document record docid {docid} is out of range 0..{n - 1} or repeated")
        doc_ids[docid], doclengths[docid] = name, length
        pos = end
    if pos != len(r.data):
        raise r.fail(pos, f"{len(r.data) - pos} bytes after the last document record")
    if len(set(doc_ids)) != n:
        raise DataError(f"{path}: collection docids are not unique")
    keep = vals > 0
    by_doc = sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(n, len(vocab)))
    by_doc.sort_indices()
    tfs = SparseVectors(by_doc.indptr.astype(np.int64), by_doc.indices.astype(np.int32), by_doc.data.astype(np.float32), vocab)
    return Ciff(header, [str(d) for d in doc_ids], tfs, doclengths)


def _postings_by_field(r: _Reader, start: int, end: int) -> tuple[str, list[int], list[int]]:
    """The term, d-gaps and tfs of one PostingsList message decoded field by field (any layout)."""
    term, gaps, tfs = "", [], []
    for number, value, at in r.fields(start, end):
        if number == 1:
            term = r.text(value, at)
        elif number == 4:
            docid, tf = 0, 0
            for sub, v, _ in r.fields(*value):
                if sub == 1:
                    docid = v
                elif sub == 2:
                    tf = v
            gaps.append(docid)
            tfs.append(tf)
    return term, gaps, tfs
