"""Corpus, queries and vectors files: valid input loads, bad input fails naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lsr.data import SparseVectors, load_corpus, load_queries, read_vectors_jsonl, resolve_dataset, write_vectors_jsonl
from lsr.errors import DataError


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_corpus_loads_title_and_text(tmp_path):
    f = write_lines(tmp_path / "corpus.jsonl", [
        json.dumps({"_id": "a", "title": "T", "text": "body"}),
        "",
        json.dumps({"_id": 7, "text": "no title"}),
        json.dumps({"_id": "e", "title": "", "text": "   "}),
    ])
    docs = load_corpus(tmp_path)
    assert [d.id for d in docs] == ["a", "7", "e"]
    assert docs[0].contents == "T body" and docs[1].contents == "no title"
    assert load_corpus(f) == docs


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"_id": "x", "text": ', "corpus.jsonl:2: invalid JSON"),
        ('{"text": "no id"}', "corpus.jsonl:2: missing '_id'"),
        ('{"_id": "", "text": "blank id"}', "corpus.jsonl:2: missing '_id'"),
        ('{"_id": "a", "text": "again"}', "corpus.jsonl:2: duplicate document id 'a' (first on line 1)"),
        ('["not", "an", "object"]', "corpus.jsonl:2: expected a JSON object"),
        ('{"_id": "b", "text": 3}', "corpus.jsonl:2: 'title' and 'text' must be strings"),
        ('{"_id": "b\\tc", "text": "x"}', "contains a tab or newline"),
    ],
)
def test_corpus_errors_name_file_and_line(tmp_path, bad_line, message):
    write_lines(tmp_path / "corpus.jsonl", ['{"_id": "a", "text": "ok"}', bad_line])
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_corpus(tmp_path)


def test_queries_jsonl_and_tsv(tmp_path):
    write_lines(tmp_path / "queries.jsonl", [json.dumps({"_id": "q1", "text": "hello"})])
    assert [(q.id, q.text) for q in load_queries(tmp_path)] == [("q1", "hello")]
    tsv = write_lines(tmp_path / "q.tsv", ["1\tfirst query", "2\tsecond"])
    assert [q.id for q in load_queries(tsv)] == ["1", "2"]
    write_lines(tsv, ["1\tfirst", "1\tagain"])
    with pytest.raises(DataError, match="q.tsv:2: duplicate query id '1'"):
        load_queries(tsv)
    write_lines(tsv, ["no tab here"])
    with pytest.raises(DataError, match="q.tsv:1: expected 'qid<TAB>text'"):
        load_queries(tsv)


def test_resolve_dataset_explicit_path_then_shared(tmp_path, monkeypatch):
    assert resolve_dataset(tmp_path) == tmp_path
    (tmp_path / "mini").mkdir()
    monkeypatch.setenv("LSR_DATA_DIR", str(tmp_path))
    assert resolve_dataset("mini") == tmp_path / "mini"
    with pytest.raises(DataError, match="not found"):
        resolve_dataset("no-such-collection-anywhere")


def test_vectors_roundtrip(tmp_path):
    vecs = SparseVectors.from_dicts([{"b": 1.5, "a": 0.25}, {}, {"c": 2.0, "a": 0.0}])
    assert vecs.vocab == ["b", "a", "c"]
    assert vecs.to_dicts() == [{"b": 1.5, "a": 0.25}, {}, {"c": 2.0}]
    write_vectors_jsonl(tmp_path / "v.jsonl", ["d1", "d2", "d3"], vecs)
    ids, back = read_vectors_jsonl(tmp_path / "v.jsonl")
    assert ids == ["d1", "d2", "d3"]
    assert back.to_dicts() == vecs.to_dicts()
    assert np.array_equal(back.take([2, 0]).indptr, [0, 1, 3])


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": "x", "vector": {"a": -1}}', "must be finite and >= 0"),
        ('{"id": "x", "vector": {"a": "heavy"}}', "must be a number"),
        ('{"id": "x", "vector": [1, 2]}', "'vector' must be an object"),
        ('{"vector": {"a": 1}}', "missing 'id'"),
        ('{"id": "d1", "vector": {"a": 1}}', "duplicate id 'd1'"),
        ('{"id": "x", "vector": {"a": NaN}}', "must be finite"),
    ],
)
def test_vectors_errors(tmp_path, line, message):
    f = write_lines(tmp_path / "v.jsonl", ['{"id": "d1", "vector": {"a": 1}}', line])
    with pytest.raises(DataError, match=f"v.jsonl:2: .*{message}"):
        read_vectors_jsonl(f)
