"""Corpus, queries and vectors files: valid input loads, bad input fails naming file and line."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lsr.data import SparseVectors, load_corpus, load_queries, read_vectors_jsonl, resolve_dataset, write_vectors_jsonl
from lsr.data.beir import find_shared
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
    assert [(d.id, d.title, d.text, d.contents) for d in docs] == [
        ("a", "T", "body", "T body"), ("7", "", "no title", "no title"), ("e", "", "   ", "   ")]  # empty documents are kept
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
        ('{"_id": "b\\tc", "text": "x"}', "corpus.jsonl:2: id 'b\\tc' contains white space, which TREC runs cannot carry"),
        ('{"_id": "b c", "text": "x"}', "corpus.jsonl:2: id 'b c' contains white space, which TREC runs cannot carry"),
    ],
)
def test_corpus_errors_name_file_and_line(tmp_path, bad_line, message):
    write_lines(tmp_path / "corpus.jsonl", ['{"_id": "a", "text": "ok"}', bad_line])
    with pytest.raises(DataError, match=re.escape(message)):
        load_corpus(tmp_path)


def test_queries_jsonl_and_tsv(tmp_path):
    write_lines(tmp_path / "queries.jsonl", [json.dumps({"_id": "q1", "text": "hello"})])
    assert [(q.id, q.text) for q in load_queries(tmp_path)] == [("q1", "hello")]
    tsv = write_lines(tmp_path / "q.tsv", ["1\tfirst query", "2\tsecond\twith a tab"])
    expected = [("1", "first query"), ("2", "second\twith a tab")]  # only the first tab separates
    assert [(q.id, q.text) for q in load_queries(tsv)] == expected
    with gzip.open(tmp_path / "q.tsv.gz", "wt") as f:
        f.write(tsv.read_text())
    with gzip.open(tmp_path / "q.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in expected))
    for gz in ("q.tsv.gz", "q.jsonl.gz"):
        assert [(q.id, q.text) for q in load_queries(tmp_path / gz)] == expected, gz
    write_lines(tmp_path / "queries.jsonl", [json.dumps({"_id": "q1", "text": 3})])
    with pytest.raises(DataError, match="queries.jsonl:1: query 'text' must be a string"):
        load_queries(tmp_path)
    write_lines(tsv, ["1\tfirst", "1\tagain"])
    with pytest.raises(DataError, match="q.tsv:2: duplicate query id '1'"):
        load_queries(tsv)
    write_lines(tsv, ["no tab here"])
    with pytest.raises(DataError, match="q.tsv:1: expected 'qid<TAB>text'"):
        load_queries(tsv)


def test_resolve_dataset_explicit_path_then_shared(tmp_path, monkeypatch):
    assert resolve_dataset(tmp_path) == tmp_path
    (tmp_path / "mini").mkdir()
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("LSR_DATA_DIR", str(tmp_path))
    assert resolve_dataset("mini") == find_shared("mini") == tmp_path.resolve() / "mini"
    assert find_shared("file") is None and find_shared("absent") is None  # folders only
    with pytest.raises(DataError, match="not found"):
        resolve_dataset("no-such-collection-anywhere")


def test_vectors_roundtrip(tmp_path):
    vecs = SparseVectors.from_dicts([{"b": 1.5, "a": 0.25}, {}, {"c": 2.0, "a": 0.0}])
    assert vecs.vocab == ["b", "a", "c"]
    assert vecs.to_dicts() == [{"b": 1.5, "a": 0.25}, {}, {"c": 2.0}]
    write_vectors_jsonl(tmp_path / "v.jsonl", ["d1", "d2", "d3"], vecs)
    assert [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()] == [
        {"id": "d1", "vector": {"b": 1.5, "a": 0.25}}, {"id": "d2", "vector": {}}, {"id": "d3", "vector": {"c": 2.0}}]
    ids, back = read_vectors_jsonl(tmp_path / "v.jsonl")
    assert ids == ["d1", "d2", "d3"]
    assert back.to_dicts() == vecs.to_dicts()
    taken = back.take([2, 0])
    assert np.array_equal(taken.indptr, [0, 1, 3]) and taken.to_dicts() == [{"c": 2.0}, {"b": 1.5, "a": 0.25}]


def test_vectors_concat():
    vocab = ["a", "b", "c"]
    first = SparseVectors.from_dicts([{"a": 1.0}, {"b": 2.0, "c": 3.0}], vocab)
    second = SparseVectors.from_dicts([{}, {"c": 4.0}], vocab)
    both = SparseVectors.concat([first, second])
    assert both.indptr.tolist() == [0, 1, 3, 3, 4] and both.indices.tolist() == [0, 1, 2, 2]
    assert (both.indptr.dtype, both.indices.dtype, both.values.dtype) == (np.int64, np.int32, np.float32)
    assert both.to_dicts() == first.to_dicts() + second.to_dicts()
    with pytest.raises(ValueError, match="nothing to concatenate"):
        SparseVectors.concat([])


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": "x", "vector": {"a": -1}}', "must be finite and >= 0"),
        ('{"id": "x", "vector": {"a": "heavy"}}', "must be a number"),
        ('{"id": "x", "vector": [1, 2]}', "'vector' must be an object"),
        ('{"vector": {"a": 1}}', "missing '_id'"),  # a vectors line's id is checked as a corpus record's ('id' or '_id')
        ('{"id": "d 2", "vector": {"a": 1}}', "id 'd 2' contains white space"),
        ('{"id": "d1", "vector": {"a": 1}}', "duplicate id 'd1'"),
        ('{"id": "x", "vector": {"a": NaN}}', "must be finite"),
    ],
)
def test_vectors_errors(tmp_path, line, message):
    f = write_lines(tmp_path / "v.jsonl", ['{"id": "d1", "vector": {"a": 1}}', line])
    with pytest.raises(DataError, match=f"v.jsonl:2: .*{message}"):
        read_vectors_jsonl(f)
