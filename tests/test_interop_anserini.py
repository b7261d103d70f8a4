"""Anserini JsonVectorCollection: `lsr encode --format anserini` files that pyserini indexes and
that `lsr index --vectors` reads back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lsr.data import SparseVectors
from lsr.data.anserini import integer_weights, write_json_vectors
from lsr.data.vectors import read_vector_records
from lsr.encoders.query_encodings import read_query_encodings
from lsr.errors import DataError
from lsr.retrieval import Retriever
from tests.conftest import run_cli

K = 10


@pytest.fixture(scope="module")
def encoded(adi: Path, tmp_path_factory) -> tuple[Path, Path]:
    """ADI documents and queries encoded by splade-tiny as JsonVectorCollection files."""
    work = tmp_path_factory.mktemp("anserini")
    (work / "docs").mkdir()
    run_cli("encode", "--corpus", str(adi), "--format", "anserini", "--out", str(work / "docs" / "part0.jsonl"))
    run_cli("encode", "--queries", str(adi), "--format", "anserini", "--out", str(work / "queries.tsv"))
    return work / "docs", work / "queries.tsv"


def _queries(path: Path) -> list[tuple[str, dict[str, int]]]:
    """Anserini's query encodings: qid<TAB>each token repeated by its integer weight."""
    ids, rows = read_query_encodings(path)
    assert all(float(w).is_integer() and w >= 1 for row in rows for w in row.values())
    return [(qid, {t: int(w) for t, w in row.items()}) for qid, row in zip(ids, rows)]


def test_encode_writes_integer_vectors_and_contents(encoded, adi: Path):
    docs, _ = encoded
    lines = [json.loads(line) for line in (docs / "part0.jsonl").read_text().splitlines()]
    assert len(lines) == 82 and set(lines[0]) == {"id", "contents", "vector"}
    assert all(isinstance(w, int) and w >= 1 for line in lines for w in line["vector"].values())
    first = json.loads((adi / "corpus.jsonl").read_text().splitlines()[0])
    assert lines[0]["id"] == first["_id"] and first["text"] in lines[0]["contents"]


def test_integer_weights_rule():
    """round(w x scale), half to even, and a positive weight never becomes 0."""
    np.testing.assert_array_equal(integer_weights(np.array([0.0, 0.001, 0.004, 0.005, 0.015, 1.234]), 100), [0, 1, 1, 1, 2, 123])


def test_index_from_anserini_folder_exact(encoded, tmp_path: Path):
    """`lsr index --vectors FOLDER` reads the collection (texts stored as the documents' text);
    exact search over it equals brute force over the integer weights."""
    docs, queries = encoded
    run_cli("index", "--vectors", str(docs), "--model", "splade-tiny", "--out", str(tmp_path / "idx"))
    retriever = Retriever.load(tmp_path / "idx")
    ids, texts, vecs = read_vector_records(docs)
    dense = np.zeros((len(ids), len(vecs.vocab)))
    for i in range(len(ids)):
        t, w = vecs.row(i)
        dense[i, t] = w
    position = {t: i for i, t in enumerate(vecs.vocab)}
    for _, q in _queries(queries):
        qv = np.zeros(len(vecs.vocab))
        for term, w in q.items():
            if term in position:
                qv[position[term]] = w
        brute = dense @ qv
        got = retriever.search(q, k=K, fields=["text"])
        np.testing.assert_allclose(got.scores, np.sort(brute)[::-1][:K], rtol=1e-4)
        assert got.fields[0]["text"] == texts[ids.index(got.ids[0])]
    assert retriever.search("computer programs", k=3).ids  # the recorded model encodes text queries


def test_bad_anserini_line_one_clear_error(tmp_path: Path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.jsonl").write_text('{"id": "a", "contents": "x", "vector": {"t": 3}}\n')
    (tmp_path / "c" / "b.jsonl").write_text('{"id": "a", "contents": "y", "vector": {"t": 1}}\n')
    with pytest.raises(DataError, match=r"b.jsonl:1: duplicate id 'a' \(first at .*a.jsonl:1\)"):
        read_vector_records(tmp_path / "c")
    (tmp_path / "c" / "b.jsonl").write_text('{"id": "b", "vector": {"t": -1}}\n')
    proc = run_cli("index", "--vectors", str(tmp_path / "c"), "--out", str(tmp_path / "never"), check=False)
    assert proc.returncode == 2 and "b.jsonl:1: token 't'" in proc.stderr and not (tmp_path / "never").exists()


def test_write_json_vectors_round_trip(tmp_path: Path):
    v = SparseVectors.from_dicts([{"a": 0.5, "b": 0.004}, {}])
    assert write_json_vectors(tmp_path / "x.jsonl", ["d1", "d2"], v, ["t1", "t2"]) == 2
    ids, texts, back = read_vector_records(tmp_path / "x.jsonl")
    assert ids == ["d1", "d2"] and texts == ["t1", "t2"] and back.to_dicts() == [{"a": 50.0, "b": 1.0}, {}]


_PYSERINI_CHILD = """
import json, sys
from collections import Counter
from lsr.evaluation.pyserini_ref import start_jvm
start_jvm()
from pyserini.pyclass import autoclass
docs, index, queries, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
autoclass("io.anserini.index.IndexCollection").main(["-collection", "JsonVectorCollection", "-input", docs, "-index", index,
    "-generator", "DefaultLuceneDocumentGenerator", "-threads", "1", "-impact", "-pretokenized"])
from pyserini.search.lucene import LuceneImpactSearcher
searcher = LuceneImpactSearcher(index, query_encoder=None)
JHashMap, JInt = autoclass("java.util.HashMap"), autoclass("java.lang.Integer")
out = {}
for line in open(queries):
    qid, _, tokens = line.rstrip("\\n").partition("\\t")
    jq = JHashMap()
    for term, w in Counter(tokens.split()).items():
        jq.put(term, JInt(w))
    out[qid] = [(h.docid, float(h.score)) for h in searcher.object.search(jq, k)]
print(json.dumps(out))
"""


def test_pyserini_impact_index_returns_our_topk(encoded, tmp_path: Path):
    """pyserini's Lucene impact index of our JsonVectorCollection returns our top-k: the same
    integer scores rank by rank, and the same documents except where tied with the k-th."""
    from lsr.evaluation.pyserini_ref import status

    ok, why = status()
    if not ok:
        pytest.skip(f"pyserini impact search not checked: {why}")
    docs, queries = encoded
    proc = subprocess.run([sys.executable, "-c", _PYSERINI_CHILD, str(docs), str(tmp_path / "lucene"), str(queries), str(K)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lucene = json.loads(proc.stdout.strip().splitlines()[-1])
    run_cli("index", "--vectors", str(docs), "--out", str(tmp_path / "ours"))
    ours = Retriever.load(tmp_path / "ours")
    for qid, q in _queries(queries):
        mine = ours.search(q, k=K)
        theirs = lucene[qid]
        np.testing.assert_allclose([s for _, s in theirs], mine.scores, rtol=1e-4)
        cut = mine.scores[-1] * (1 + 1e-4)
        assert {i for i, s in zip(mine.ids, mine.scores) if s > cut} <= {d for d, _ in theirs}
