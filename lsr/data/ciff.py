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
    term_parts, doc_parts, tf_parts = [], [], []
    for t in range(header.num_postings_lists):
        start, end = r.delimited(pos, f"postings list {t + 1} of {header.num_postings_lists}")
        term, docs, tfs = "", [], []
        for number, value, at in r.fields(start, end):
            if number == 1:
                term = r.text(value, at)
            elif number == 4:
                docid, tf = 0, 0
                for sub, v, sub_at in r.fields(*value):
                    if sub == 1:
                        docid = v
                    elif sub == 2:
                        tf = v
                docs.append(docid)
                tfs.append(tf)
        if term in seen:
            raise r.fail(pos, f"term {term!r} has a second postings list")
        seen.add(term)
        ids = np.cumsum(np.asarray(docs, dtype=np.int64))
        tf_arr = np.asarray(tfs, dtype=np.int64)
        if len(docs) and (min(docs[1:], default=1) <= 0 or docs[0] < 0):
            raise r.fail(pos, f"term {term!r}: docids must ascend strictly (d-gaps > 0)")
        if len(tf_arr) and tf_arr.min() < 0:
            raise r.fail(pos, f"term {term!r}: negative tf")
        if len(ids) and ids[-1] >= header.num_doc_records:
            raise r.fail(pos, f"term {term!r}: docid {int(ids[-1])} but the header counts {header.num_doc_records} documents")
        term_parts.append(np.full(len(ids), len(vocab), dtype=np.int32))
        doc_parts.append(ids)
        tf_parts.append(tf_arr)
        vocab.append(term)
        pos = end
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
    rows = np.concatenate(doc_parts) if doc_parts else np.zeros(0, np.int64)
    cols = np.concatenate(term_parts) if term_parts else np.zeros(0, np.int32)
    vals = np.concatenate(tf_parts) if tf_parts else np.zeros(0, np.int64)
    keep = vals > 0
    by_doc = sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(n, len(vocab)))
    by_doc.sort_indices()
    tfs = SparseVectors(by_doc.indptr.astype(np.int64), by_doc.indices.astype(np.int32), by_doc.data.astype(np.float32), vocab)
    return Ciff(header, [str(d) for d in doc_ids], tfs, doclengths)
