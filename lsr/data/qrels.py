"""Relevance judgments, topics and runs: BEIR and TREC formats, and test collections by name.

* qrels: BEIR TSV (``query-id<TAB>corpus-id<TAB>score``, header optional) or TREC
  (``qid iter docno rel``), plain or gzipped; :func:`load_qrels` tells them apart line by line.
* topics: ``queries.jsonl``, ``qid<TAB>text`` TSV, or TREC SGML topics (``<top><num>...<title>``).
* runs: TREC run files (``qid Q0 docno rank score tag``), with an optional JSON sidecar
  describing the system that produced them (``<run>.json``).
* :func:`load_collection` resolves a name to queries + qrels (+ corpus when there is one): a
  folder, a collection in ``../shared/data``, a known alias of an ``ir_datasets`` id
  (``beir/scifact/test``, ``msmarco-passage/dev/small``, ``msmarco-passage/trec-dl-2019/judged``
  ...) that is available offline, or any ``ir_datasets`` id when online.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsr.data.beir import Query, load_queries, resolve_dataset, shared_data_dirs
from lsr.errors import DataError

# query id -> {doc id: score}, best first.
Run = dict[str, dict[str, float]]

# BEIR scores these with ignore_identical_ids: a document whose id equals the query id is the
# query itself (ArguAna arguments, Quora questions) and is dropped from the ranking.
IGNORE_IDENTICAL_IDS = frozenset({"arguana", "quora"})


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


# ---- qrels ------------------------------------------------------------------------------------
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

    def restrict(self, query_ids) -> "Qrels":
        keep = set(query_ids)
        judgments = {q: d for q, d in self.judgments.items() if q in keep}
        return Qrels(judgments, self.source, sum(len(d) for d in judgments.values()))


_HEADER_WORDS = {"score", "relevance", "rel", "label"}


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
    with _open_text(f) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            parts = [p.strip() for p in parts]
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
    judgments = qrels.judgments if isinstance(qrels, Qrels) else qrels
    if fmt not in ("trec", "beir"):
        raise ValueError("fmt must be 'trec' or 'beir'")
    with open(path, "w", encoding="utf-8") as f:
        if fmt == "beir":
            f.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in judgments.items():
            for did, rel in docs.items():
                f.write(f"{qid} 0 {did} {rel}\n" if fmt == "trec" else f"{qid}\t{did}\t{rel}\n")


# ---- topics -----------------------------------------------------------------------------------
_SGML_TOP = re.compile(r"<top>(.*?)</top>", re.S | re.I)
_SGML_FIELD = re.compile(r"<(num|title|desc|narr)>(.*?)(?=<(?:num|title|desc|narr|/top)>|$)", re.S | re.I)


def load_topics(path: str | os.PathLike, *, field: str = "title") -> list[Query]:
    """Queries from queries.jsonl, a ``qid<TAB>text`` TSV, or TREC SGML topics (also gzipped).

    For SGML topics ``field`` picks ``title`` (default), ``desc`` or ``narr``.
    """
    p = Path(path)
    f = p / "queries.jsonl" if p.is_dir() else p
    if not f.is_file():
        raise DataError(f"no topics file at {f}")
    name = f.name[:-3] if f.suffix == ".gz" else f.name
    with _open_text(f) as fh:
        text = fh.read()
    if "<top>" in text[:100_000].lower():
        return _parse_sgml_topics(text, f, field)
    if f.suffix != ".gz":
        return load_queries(f)  # queries.jsonl or qid<TAB>text, validated line by line
    if name.endswith(".jsonl"):
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{f}:{lineno}: invalid JSON ({e.msg})") from None
                rows.append((str(obj.get("_id", obj.get("id", ""))).strip(), str(obj.get("text", ""))))
        return _checked(rows, f)
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t", 1)
        if len(parts) != 2:
            raise DataError(f"{f}:{lineno}: expected 'qid<TAB>text'")
        rows.append((parts[0].strip(), parts[1]))
    return _checked(rows, f)


def _parse_sgml_topics(text: str, f: Path, field: str) -> list[Query]:
    rows = []
    for top in _SGML_TOP.findall(text):
        fields = {k.lower(): v for k, v in _SGML_FIELD.findall(top)}
        num = re.sub(r"^\s*(Number:)?", "", fields.get("num", ""), flags=re.I).strip()
        value = fields.get(field, "")
        value = re.sub(r"^\s*(Topic:|Description:|Narrative:)", "", value, flags=re.I)
        rows.append((num, " ".join(value.split())))
    if not rows:
        raise DataError(f"{f}: no <top> topics found")
    return _checked(rows, f)


def _checked(rows: list[tuple[str, str]], f: Path) -> list[Query]:
    seen: set[str] = set()
    out = []
    for qid, text in rows:
        if not qid:
            raise DataError(f"{f}: a topic has no id")
        if qid in seen:
            raise DataError(f"{f}: duplicate topic id {qid!r}")
        seen.add(qid)
        out.append(Query(qid, text))
    return out


# ---- runs -------------------------------------------------------------------------------------
def read_run(path: str | os.PathLike) -> Run:
    """A TREC run file as ``{qid: {docno: score}}`` (each query's documents best first)."""
    f = Path(path)
    if not f.is_file():
        raise DataError(f"no run file at {f}")
    rows: dict[str, list[tuple[float, int, str]]] = {}
    with _open_text(f) as fh:
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
    """Write a TREC run (ranks follow each query's order) and, if given, its description sidecar."""
    f = Path(path)
    f.parent.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"\s+", "_", tag) or "lsr"
    tmp = f.with_name(f".{f.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for qid, docs in run.items():
            for rank, (did, score) in enumerate(docs.items(), 1):
                fh.write(f"{qid} Q0 {did} {rank} {score:.6f} {tag}\n")
    tmp.replace(f)
    if description is not None:
        Path(str(f) + ".json").write_text(json.dumps(description, indent=2, default=str) + "\n", encoding="utf-8")
    return f


def run_description(path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar description written next to a run, if any."""
    side = Path(str(path) + ".json")
    return json.loads(side.read_text(encoding="utf-8")) if side.is_file() else None


# ---- collections ------------------------------------------------------------------------------
@dataclass
class Collection:
    """What an evaluation needs: queries, their judgments and (when available) the corpus."""

    name: str
    queries: list[Query]
    qrels: Qrels
    corpus: Path | None = None
    split: str = "test"
    relevance_level: int = 1  # minimum relevance counted as relevant by Recall and RR
    ignore_identical_ids: bool = False
    root: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def judged_queries(self) -> list[Query]:
        return [q for q in self.queries if q.id in self.qrels.judgments]


@dataclass(frozen=True)
class _Alias:
    folder: str
    split: str
    judged_only: bool = False
    relevance_level: int = 1


# ir_datasets ids whose queries and qrels ../shared/data holds, so they work offline.
ALIASES = {
    "msmarco-passage/dev/small": _Alias("msmarco-passage", "dev-small"),
    "msmarco-passage/trec-dl-2019/judged": _Alias("msmarco-passage", "dl19", True, 2),
    "msmarco-passage/trec-dl-2019": _Alias("msmarco-passage", "dl19", False, 2),
    "msmarco-passage/trec-dl-2020/judged": _Alias("msmarco-passage", "dl20", True, 2),
    "msmarco-passage/trec-dl-2020": _Alias("msmarco-passage", "dl20", False, 2),
}
# Relevance levels the official evaluations use (TREC DL: graded 0-3, relevant from 2).
RELEVANCE_LEVELS = {("msmarco-passage", "dl19"): 2, ("msmarco-passage", "dl20"): 2}


def collection_name(name: str | os.PathLike) -> str:
    """The short name :func:`load_collection` gives a collection (what reports and caches use)."""
    label = str(name)
    m = re.fullmatch(r"beir/([^/]+(?:/[^/]+)?)/(test|dev|train)", label)
    if m and label not in ALIASES:
        return m.group(1).replace("/", "-")
    return Path(label).name if Path(label).expanduser().exists() else label


def _shared(name: str) -> Path | None:
    for d in shared_data_dirs():
        if (d / name).is_dir():
            return d / name
    return None


def load_collection(
    name: str | os.PathLike,
    split: str | None = None,
    *,
    qrels: str | os.PathLike | None = None,
    queries: str | os.PathLike | None = None,
    judged_only: bool = False,
    relevance_level: int | None = None,
    ignore_identical_ids: bool | None = None,
) -> Collection:
    """Queries + qrels (+ corpus) of a collection.

    ``name`` is a folder in BEIR layout, a collection name in ``../shared/data`` (``scifact``,
    ``msmarco-passage`` with ``split`` ``dev-small``/``dl19``/``dl20``...), a BEIR name with a
    ``beir-queries-qrels`` entry (queries and qrels only), an ``ir_datasets`` id known offline
    (:data:`ALIASES`, ``beir/<name>/test``), or any other ``ir_datasets`` id (needs the
    ``datasets`` extra and a network). ``qrels``/``queries`` override the files found.
    """
    label = str(name)
    alias = ALIASES.get(label)
    m = re.fullmatch(r"beir/([^/]+(?:/[^/]+)?)/(test|dev|train)", label)
    if alias is not None and _shared(alias.folder) is not None:
        root = _shared(alias.folder)
        split = split or alias.split
        judged_only = judged_only or alias.judged_only
        relevance_level = relevance_level if relevance_level is not None else alias.relevance_level
    elif m and (_shared(m.group(1)) or _shared(f"beir-queries-qrels/{m.group(1).replace('/', '-')}")):
        beir_name = m.group(1).replace("/", "-")
        root = _shared(beir_name) or _shared(f"beir-queries-qrels/{beir_name}")
        split = split or m.group(2)
        label = beir_name
    else:
        p = Path(label).expanduser()
        if not p.exists() and "/" not in label and _shared(label) is None and _shared(f"beir-queries-qrels/{label}"):
            root = _shared(f"beir-queries-qrels/{label}")
        else:
            root = resolve_dataset(label)  # a path, ../shared/data/<name>, or an ir_datasets export
            if root.is_file():
                raise DataError(f"{root} is a file; give a collection folder (corpus.jsonl, queries.jsonl, qrels/)")
    split = split or "test"
    short = collection_name(name)
    qrels_file = Path(qrels) if qrels is not None else _find_split_file(root, split, "qrels")
    queries_file = Path(queries) if queries is not None else _find_split_file(root, split, "queries")
    judgments = load_qrels(qrels_file)
    topics = load_topics(queries_file)
    notes = []
    if judged_only:
        n = len(topics)
        topics = [q for q in topics if q.id in judgments.judgments]
        notes.append(f"kept the {len(topics)} judged of {n} queries")
    corpus = root / "corpus.jsonl"
    base = root.name
    if relevance_level is None:
        relevance_level = RELEVANCE_LEVELS.get((base, split), 1)
    if ignore_identical_ids is None:
        ignore_identical_ids = base in IGNORE_IDENTICAL_IDS or short in IGNORE_IDENTICAL_IDS
    return Collection(
        name=short,
        queries=topics,
        qrels=judgments,
        corpus=corpus if corpus.is_file() else None,
        split=split,
        relevance_level=relevance_level,
        ignore_identical_ids=ignore_identical_ids,
        root=root,
        notes=notes,
    )


def _find_split_file(root: Path, split: str, kind: str) -> Path:
    """``qrels/<split>.tsv`` (or .txt/.gz variants) and ``queries.<split>.jsonl`` or ``queries.jsonl``."""
    if kind == "qrels":
        candidates = [root / "qrels" / f"{split}{ext}" for ext in (".tsv", ".txt", ".tsv.gz", ".txt.gz")]
        candidates += [root / f"qrels.{split}{ext}" for ext in (".tsv", ".txt")]
    else:
        candidates = [root / f"queries.{split}{ext}" for ext in (".jsonl", ".tsv", ".tsv.gz")] + [root / "queries.jsonl"]
    for c in candidates:
        if c.is_file():
            return c
    available = sorted(p.name for p in (root / "qrels").glob("*")) if (root / "qrels").is_dir() else []
    hint = f" (qrels available: {', '.join(available)})" if kind == "qrels" and available else ""
    raise DataError(f"no {kind} file for split {split!r} in {root}: looked for {', '.join(c.name for c in candidates[:2])}{hint}")


def iter_run_rows(run: Mapping[str, Mapping[str, float]]) -> Iterator[tuple[str, str, float]]:
    for qid, docs in run.items():
        for did, score in docs.items():
            yield qid, did, float(score)
