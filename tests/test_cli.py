"""End to end through the `lsr` command line on the ADI collection, and its bad-input paths."""

from __future__ import annotations

import json

from conftest import run_cli

from lsr.index import Index


def test_index_search_info(adi_index, tmp_path):
    info = json.loads(run_cli("info", "--index", str(adi_index), "--json", "--verify").stdout)
    assert info["num_docs"] == 82 and info["model"] == "splade-tiny" and info["vocab_size"] == 30522
    assert info["num_postings"] > 82 * 20 and info["max_quantization_error"] > 0

    out = json.loads(run_cli("search", "--index", str(adi_index), "--query", "automatic indexing of documents", "-k", "5", "--json").stdout)
    assert [h["rank"] for h in out["hits"]] == [1, 2, 3, 4, 5]
    scores = [h["score"] for h in out["hits"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0

    run = tmp_path / "run.trec"
    run_cli("search", "--index", str(adi_index), "--queries", "adi", "-k", "10", "--run-out", str(run), "--tag", "tiny")
    lines = [line.split() for line in run.read_text().splitlines()]
    assert len({line[0] for line in lines}) == 35 and all(len(line) == 6 and line[1] == "Q0" and line[5] == "tiny" for line in lines)
    assert all(int(line[3]) <= 10 for line in lines)


def test_search_finds_relevant_documents(adi_index, adi):
    """A sanity bar on quality: most ADI queries have a judged-relevant doc in their top 10."""
    qrels = {}
    for line in (adi / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, rel = line.split("\t")
        if int(rel) > 0:
            qrels.setdefault(qid, set()).add(did)
    queries = [json.loads(line) for line in (adi / "queries.jsonl").read_text().splitlines() if line.strip()]
    index = Index.load(adi_index)
    results = index.search_batch([q["text"] for q in queries], k=10)
    judged = [(q["_id"], r) for q, r in zip(queries, results) if q["_id"] in qrels]
    hit_rate = sum(bool(qrels[qid] & set(r.ids)) for qid, r in judged) / len(judged)
    assert hit_rate > 0.5


def test_encode_then_index_from_vectors_gives_the_same_results(adi_index, adi, tmp_path):
    vectors = tmp_path / "vectors.jsonl"
    run_cli("encode", "--corpus", str(adi), "--out", str(vectors))
    first = json.loads(vectors.read_text().splitlines()[0])
    assert set(first) == {"id", "vector"} and all(isinstance(w, float) for w in first["vector"].values())
    run_cli("index", "--vectors", str(vectors), "--out", str(tmp_path / "from_vectors"))
    query = {"library": 1.0, "computer": 0.5}
    a = Index.load(adi_index).search(query, 10)
    b = Index.load(tmp_path / "from_vectors").search(query, 10)
    assert a.ids == b.ids

    qvecs = tmp_path / "queries.jsonl"
    run_cli("encode", "--queries", str(adi), "--out", str(qvecs))
    assert len(qvecs.read_text().splitlines()) == 35


def test_bad_corpus_fails_cleanly_and_writes_nothing(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "1", "text": "fine"}\n{"_id": "1", "text": "dup"}\n')
    out = tmp_path / "index"
    proc = run_cli("index", "--corpus", str(corpus), "--out", str(out), check=False)
    assert proc.returncode == 2
    assert "corpus.jsonl:2: duplicate document id '1'" in proc.stderr
    assert not out.exists()


def test_empty_documents_are_indexed_without_postings(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "title": "Cats", "text": "cats purr"}\n{"_id": "b", "text": "  "}\n')
    summary = json.loads(run_cli("index", "--corpus", str(corpus), "--out", str(tmp_path / "i")).stdout)
    assert summary["num_docs"] == 2 and summary["empty_docs"] == 1
    out = json.loads(run_cli("search", "--index", str(tmp_path / "i"), "--query", "cats", "--json").stdout)
    assert [h["id"] for h in out["hits"]] == ["a"]
    out = json.loads(run_cli("search", "--index", str(tmp_path / "i"), "--query", "   ", "--json").stdout)
    assert out["hits"] == []


def test_cli_errors(tmp_path, adi_index):
    proc = run_cli("search", "--index", str(tmp_path / "nope"), "--query", "x", check=False)
    assert proc.returncode == 2 and "no index directory" in proc.stderr
    proc = run_cli("search", "--index", str(adi_index), "--query", "x", "-k", "0", check=False)
    assert proc.returncode == 2 and "must be a positive integer" in proc.stderr
    newer = tmp_path / "newer"
    newer.mkdir()
    manifest = json.loads((adi_index / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2, "files": {}}))
    proc = run_cli("info", "--index", str(newer), check=False)
    assert proc.returncode == 2 and "newer than this lsr reads" in proc.stderr
