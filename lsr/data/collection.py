"""Test collections by name: queries + qrels (+ corpus when there is one), so an evaluation needs a
single argument. A name is a folder, a collection in ``../shared/data``, a known alias of an
``ir_datasets`` id (``beir/scifact/test``, ``msmarco-passage/dev/small``,
``msmarco-passage/trec-dl-2019/judged``...) that is available offline, or any ``ir_datasets`` id
when online."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lsr.data.beir import Query, find_shared, iter_corpus, resolve_dataset
from lsr.data.qrels import Qrels, load_qrels
from lsr.data.topics import load_topics
from lsr.errors import DataError

# BEIR scores these with ignore_identical_ids: a document whose id equals the query id is the
# query itself (ArguAna arguments, Quora questions) and is dropped from the ranking.
IGNORE_IDENTICAL_IDS = frozenset({"arguana", "quora"})


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

# ir_datasets' BEIR ids: beir/<name>/<split>, or beir/cqadupstack/<forum>/<split>.
_BEIR_ID = re.compile(r"beir/([^/]+(?:/[^/]+)?)/(test|dev|train)")


def collection_name(name: str | os.PathLike) -> str:
    """The short name :func:`load_collection` gives a collection (what reports and caches use)."""
    label = str(name)
    m = _BEIR_ID.fullmatch(label)
    if m and label not in ALIASES:
        return _beir_name(m)
    return Path(label).name if Path(label).expanduser().exists() else label


def _beir_name(m: re.Match[str]) -> str:
    """``cqadupstack-android`` for ``beir/cqadupstack/android/test``: the folder name BEIR uses."""
    return m.group(1).replace("/", "-")


def _shared_beir(name: str) -> Path | None:
    """A full collection in ../shared/data, else its queries-and-qrels-only entry."""
    return find_shared(name) or find_shared(f"beir-queries-qrels/{name}")


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
    m = _BEIR_ID.fullmatch(label)
    root: Path | None = None
    if alias is not None and (root := find_shared(alias.folder)) is not None:
        split = split or alias.split
        judged_only = judged_only or alias.judged_only
        relevance_level = relevance_level if relevance_level is not None else alias.relevance_level
    elif m and (root := _shared_beir(_beir_name(m))) is not None:
        split = split or m.group(2)
    else:
        if "/" not in label and not Path(label).expanduser().exists():
            root = _shared_beir(label)
        if root is None:
            root = resolve_dataset(label)  # a path, ../shared/data/<name>, or an ir_datasets export
            if root.is_file():
                raise DataError(f"{root} is a file; give a collection folder (corpus.jsonl, queries.jsonl, qrels/)")
    split = split or "test"
    short = collection_name(name)
    judgments = load_qrels(Path(qrels) if qrels is not None else _find_split_file(root, split, "qrels"))
    topics = load_topics(Path(queries) if queries is not None else _find_split_file(root, split, "queries"))
    notes: list[str] = []
    if judged_only:
        n = len(topics)
        topics = [q for q in topics if q.id in judgments.judgments]
        notes.append(f"kept the {len(topics)} judged of {n} queries")
    corpus = root / "corpus.jsonl"
    base = root.name
    if relevance_level is None:
        relevance_level = RELEVANCE_LEVELS.get((base, split), 1)
    if ignore_identical_ids is None:
        named = any(n in f"{base} {short}".lower() for n in IGNORE_IDENTICAL_IDS)
        echoes = _self_echoes(topics, corpus) if corpus.is_file() else 0
        ignore_identical_ids = named or echoes * 2 > len(topics)
        if ignore_identical_ids:
            why = f"{echoes} of {len(topics)} queries are also documents of the corpus (same id and text)" if echoes else f"BEIR's rule for {base}"
            notes.append(f"ignore_identical_ids on: {why}; a document whose id is the query's is not counted")
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


def _self_echoes(topics: list, corpus: Path) -> int:
    """Queries whose id is a corpus document holding the query's own text (ArguAna's arguments,
    Quora's questions): BEIR drops such a self-hit. A shared id alone means nothing (the classic
    collections number queries and documents alike)."""
    wanted = {q.id: " ".join(q.text.lower().split()) for q in topics}
    echoes = 0
    for doc in iter_corpus(corpus):
        text = wanted.get(doc.id)
        if text is not None and text and text in (" ".join(doc.contents.lower().split()), " ".join(doc.text.lower().split())):
            echoes += 1
    return echoes


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
