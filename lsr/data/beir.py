"""Collections in BEIR layout (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) and where to find them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsr.data.files import check_text, format_suffix, iter_jsonl, open_text, record_id
from lsr.data.vectors import check_weight
from lsr.errors import DataError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Document:
    """A document: its text (encoded by a model) or a ready ``vector`` ({term: weight}), and a
    JSON ``metadata`` object that a collection stores and filters on."""

    id: str
    title: str = ""
    text: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: dict[str, float] | None = None

    @property
    def contents(self) -> str:
        """What gets encoded: title and text, as BEIR and pyserini join them."""
        return f"{self.title} {self.text}".strip() if self.title else self.text

    @classmethod
    def parse(cls, obj: Any, where: str) -> "Document":
        """A document from a JSON object (``_id`` or ``id``, ``title``, ``text``, ``metadata``,
        ``vector``), or a DataError naming ``where`` and what is wrong."""
        if not isinstance(obj, Mapping):
            raise DataError(f"{where}: a document is a JSON object, got {type(obj).__name__}")
        doc_id = record_id(obj, where)
        title, text = obj.get("title") or "", obj.get("text") or ""
        if not isinstance(title, str) or not isinstance(text, str):
            raise DataError(f"{where}: 'title' and 'text' must be strings")
        check_text(title, f"{where}: 'title'")
        check_text(text, f"{where}: 'text'")
        meta = obj.get("metadata") or {}
        if not isinstance(meta, Mapping):
            raise DataError(f"{where}: 'metadata' must be a JSON object")
        try:
            json.dumps(meta, allow_nan=False)
        except ValueError as e:
            raise DataError(f"{where}: 'metadata' is not plain JSON ({e})") from None
        vector = obj.get("vector")
        if vector is not None:
            if not isinstance(vector, Mapping) or obj.get("text"):
                raise DataError(f"{where}: give either 'text' or 'vector' ({{term: weight}}), not both")
            for token, weight in vector.items():
                check_weight(weight, f"{where}: token {token!r}")
        return cls(doc_id, title, text, dict(meta), dict(vector) if vector is not None else None)


@dataclass(frozen=True)
class Query:
    id: str
    text: str


def shared_data_dirs() -> list[Path]:
    """Folders searched for named collections, most specific first."""
    dirs = []
    if os.environ.get("LSR_DATA_DIR"):
        dirs.append(Path(os.environ["LSR_DATA_DIR"]))
    dirs += [Path.cwd().parent / "shared" / "data", PROJECT_ROOT.parent / "shared" / "data"]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def find_shared(name: str) -> Path | None:
    """The folder ``name`` in the first of :func:`shared_data_dirs` that has one."""
    return next((d / name for d in shared_data_dirs() if (d / name).is_dir()), None)


def resolve_dataset(name_or_path: str | os.PathLike) -> Path:
    """Find a collection: an explicit path, then ``../shared/data/<name>``, then ir_datasets.

    ir_datasets (``beir/<name>/test`` or any id it knows) is tried only when the first two
    fail; it needs the optional ``datasets`` extra and a network connection.
    """
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    name = str(name_or_path)
    return find_shared(name) or _from_ir_datasets(name)


def _from_ir_datasets(name: str) -> Path:
    """Export an ir_datasets collection to a BEIR-layout folder in the user cache."""
    searched = ", ".join(str(d / name) for d in shared_data_dirs())
    try:
        import ir_datasets
    except ImportError:
        raise DataError(
            f"collection {name!r} not found (looked for a path, and in {searched}); "
            "install the 'datasets' extra to fetch it with ir_datasets"
        ) from None
    ds_id = name if "/" in name else f"beir/{name}/test" if name != "scifact" else "beir/scifact/test"
    out = Path(os.environ.get("LSR_CACHE", Path.home() / ".cache" / "lsr")) / "datasets" / ds_id.replace("/", "__")
    if (out / "corpus.jsonl").exists():
        return out
    try:
        ds = ir_datasets.load(ds_id)
        _export_ir_dataset(ds, out)
    except Exception as e:  # network errors, unknown ids: one clear message
        raise DataError(f"collection {name!r} not found locally and ir_datasets failed for {ds_id!r}: {e}") from e
    return out


def _export_ir_dataset(ds, out: Path) -> None:
    import json

    tmp = out.with_name(out.name + ".tmp")
    (tmp / "qrels").mkdir(parents=True, exist_ok=True)
    with open(tmp / "corpus.jsonl", "w", encoding="utf-8") as f:
        for d in ds.docs_iter():
            f.write(json.dumps({"_id": d.doc_id, "title": getattr(d, "title", ""), "text": d.text}) + "\n")
    if ds.has_queries():
        with open(tmp / "queries.jsonl", "w", encoding="utf-8") as f:
            for q in ds.queries_iter():
                f.write(json.dumps({"_id": q.query_id, "text": q.text}) + "\n")
    if ds.has_qrels():
        with open(tmp / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for r in ds.qrels_iter():
                f.write(f"{r.query_id}\t{r.doc_id}\t{r.relevance}\n")
    tmp.rename(out)


def _corpus_file(path: Path) -> Path:
    f = path / "corpus.jsonl" if path.is_dir() else path
    if not f.is_file():
        raise DataError(f"no corpus file at {f}")
    return f


def iter_corpus(path: str | os.PathLike) -> Iterator[Document]:
    """Documents of a corpus.jsonl (or a folder holding one), validated line by line.

    Raises DataError naming file and line for malformed JSON, a missing ``_id`` or a
    duplicate id. Empty documents are kept: they are indexed with no postings.
    """
    f = _corpus_file(Path(path))
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(f):
        doc = Document.parse(obj, f"{f}:{lineno}")
        if doc.id in seen:
            raise DataError(f"{f}:{lineno}: duplicate document id {doc.id!r} (first on line {seen[doc.id]})")
        seen[doc.id] = lineno
        yield doc


def load_corpus(path: str | os.PathLike) -> list[Document]:
    return list(iter_corpus(path))


def load_queries(path: str | os.PathLike) -> list[Query]:
    """Queries from a queries.jsonl (or a collection folder), or a TSV of ``qid<TAB>text``; also gzipped."""
    p = Path(path)
    f = p / "queries.jsonl" if p.is_dir() else p
    if not f.is_file():
        raise DataError(f"no queries file at {f}")
    queries: list[Query] = []
    seen: dict[str, int] = {}
    if format_suffix(f) in (".tsv", ".txt"):
        with open_text(f) as fh:
            rows = [(n, line.rstrip("\n").split("\t", 1)) for n, line in enumerate(fh, 1) if line.strip()]
        for lineno, parts in rows:
            if len(parts) != 2:
                raise DataError(f"{f}:{lineno}: expected 'qid<TAB>text'")
            queries.append(add_query(seen, parts[0], parts[1], f, lineno))
        return queries
    for lineno, obj in iter_jsonl(f):
        text = obj.get("text")
        if not isinstance(text, str):
            raise DataError(f"{f}:{lineno}: query 'text' must be a string")
        queries.append(add_query(seen, record_id(obj, f"{f}:{lineno}"), text, f, lineno))
    return queries


def add_query(seen: dict[str, int], qid: str, text: str, f: Path, lineno: int) -> Query:
    """A checked query; ``seen`` maps ids to their first line, so every topics format reports duplicates alike."""
    qid = qid.strip()
    if not qid:
        raise DataError(f"{f}:{lineno}: missing query id")
    if qid in seen:
        raise DataError(f"{f}:{lineno}: duplicate query id {qid!r} (first on line {seen[qid]})")
    seen[qid] = lineno
    return Query(qid, text)

