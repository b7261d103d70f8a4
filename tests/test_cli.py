"""End to end through the `lsr` command line on the ADI collection, and its bad-input paths."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

from lsr.retrieval import Retriever

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_index_search_info(adi_index, tmp_path):
    info = json.loads(run_cli("info", "--index", str(adi_index), "--json", "--verify").stdout)
    assert info["num_docs"] == 82 and info["model"] == "splade-tiny" and info["vocab_size"] == 30522
    assert info["num_postings"] > 82 * 20 and info["max_quantization_error"] > 0
    # `lsr index` writes a one-segment collection
    assert info["generation"] == 1 and info["deleted_docs"] == 0 and info["format_version"] == 2
    assert [s["docs"] for s in info["segments"]] == [82] and info["segments"][0]["deleted"] == 0
    assert (adi_index / "collection.json").is_file() and (adi_index / "docs.sqlite").is_file()
    assert not (adi_index / "manifest.json").exists()

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
    index = Retriever.load(adi_index)
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
    a = Retriever.load(adi_index).search(query, 10)
    b = Retriever.load(tmp_path / "from_vectors").search(query, 10)
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
    # a collection written by a newer lsr
    newer = tmp_path / "newer"
    newer.mkdir()
    settings = json.loads((adi_index / "collection.json").read_text())
    assert settings["format"] == "lsr-collection" and isinstance(settings["format_version"], int)
    (newer / "collection.json").write_text(json.dumps({**settings, "format_version": settings["format_version"] + 1}))
    proc = run_cli("info", "--index", str(newer), check=False)
    assert proc.returncode == 2 and "newer than this lsr reads" in proc.stderr and "collection format" in proc.stderr
    # an index directory written by a newer lsr (a segment's manifest is an index one)
    (segment,) = (adi_index / "segments").iterdir()
    manifest = json.loads((segment / "manifest.json").read_text())
    assert manifest["format_version"] == 2
    newer_index = tmp_path / "newer_index"
    newer_index.mkdir()
    (newer_index / "manifest.json").write_text(json.dumps({**manifest, "format_version": 3, "files": {}}))
    proc = run_cli("info", "--index", str(newer_index), check=False)
    assert proc.returncode == 2 and "newer than this lsr reads" in proc.stderr and "index format version 3" in proc.stderr


def test_verify_detects_a_damaged_segment(adi_index, tmp_path):
    """`lsr info --verify` and Retriever.load(verify=True) check a collection's segment files."""
    import shutil

    import pytest

    from lsr.errors import IndexFormatError

    damaged = tmp_path / "damaged"
    shutil.copytree(adi_index, damaged)
    (segment,) = (damaged / "segments").iterdir()
    Retriever.load(damaged, verify=True)  # intact
    data = bytearray((segment / "postings_impacts.npy").read_bytes())
    data[-1] ^= 0xFF
    (segment / "postings_impacts.npy").write_bytes(bytes(data))
    assert json.loads(run_cli("info", "--index", str(damaged), "--json").stdout)["num_docs"] == 82  # a cheap open reads no data
    proc = run_cli("info", "--index", str(damaged), "--verify", check=False)
    assert proc.returncode == 2 and "postings_impacts.npy does not match its checksum" in proc.stderr
    with pytest.raises(IndexFormatError, match="postings_impacts.npy does not match its checksum"):
        Retriever.load(damaged, verify=True)


def _ranked_run(path) -> dict[str, list[str]]:
    """Document ids of each query of a TREC run file, in rank order."""
    ranked: dict[str, list[tuple[int, str]]] = {}
    for line in path.read_text().splitlines():
        qid, _, doc_id, rank, _, _ = line.split()
        ranked.setdefault(qid, []).append((int(rank), doc_id))
    return {qid: [d for _, d in sorted(hits)] for qid, hits in ranked.items()}


def test_bm25_index_search_matches_lsr_evaluate(adi, tmp_path):
    """`lsr index --model bm25` then `lsr search` ranks a query as `lsr evaluate --model bm25` does."""
    summary = json.loads(run_cli("index", "--corpus", "adi", "--model", "bm25", "--out", str(tmp_path / "bm25")).stdout)
    assert summary["num_docs"] == 82 and summary["model"] == "bm25"
    info = json.loads(run_cli("info", "--index", str(tmp_path / "bm25"), "--json").stdout)
    assert info["model"] == "bm25" and info["encoder"]["analyzer"]["stemmer"] == "porter"

    report = json.loads(run_cli("evaluate", "--dataset", "adi", "--model", "bm25", "-k", "10", "--no-efficiency", "--json",
                                "--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs")).stdout)
    assert report["metrics"]["nDCG@10"] > 0
    evaluated = _ranked_run(tmp_path / "runs" / "adi" / "bm25.trec")
    queries = [json.loads(line) for line in (adi / "queries.jsonl").read_text().splitlines() if line.strip()]
    for q in queries[:3]:
        out = json.loads(run_cli("search", "--index", str(tmp_path / "bm25"), "--query", q["text"], "-k", "10", "--json").stdout)
        ids = [h["id"] for h in out["hits"]]
        assert ids and ids == evaluated[q["_id"]], q["_id"]
    # every query, as a batch through the CLI, against the Python evaluation harness
    from lsr.data import load_collection
    from lsr.evaluation.harness import SystemSpec, evaluate_system

    run_cli("search", "--index", str(tmp_path / "bm25"), "--queries", "adi", "-k", "10", "--run-out", str(tmp_path / "cli.trec"))
    evaluate_system(SystemSpec(name="bm25-py", model="bm25"), load_collection("adi"), k=10, cache_dir=tmp_path / "cache",
                    runs_dir=tmp_path / "runs", efficiency=False, log=lambda _: None)
    harness = _ranked_run(tmp_path / "runs" / "adi" / "bm25-py.trec")
    assert _ranked_run(tmp_path / "cli.trec") == harness == evaluated and len(harness) == 35


def test_index_from_vectors_records_the_model_it_is_given(adi_index, adi, tmp_path):
    vectors = tmp_path / "vectors.jsonl"
    run_cli("encode", "--corpus", str(adi), "--out", str(vectors))
    with_model, without = tmp_path / "with_model", tmp_path / "without"
    summary = json.loads(run_cli("index", "--vectors", str(vectors), "--model", "splade-tiny", "--out", str(with_model)).stdout)
    assert summary["model"] == "splade-tiny"
    assert json.loads(run_cli("info", "--index", str(with_model), "--json").stdout)["model"] == "splade-tiny"
    assert Retriever.load(with_model).model == "splade-tiny"

    text = ["--query", "automatic indexing of documents", "-k", "10", "--json"]
    searched = json.loads(run_cli("search", "--index", str(with_model), *text).stdout)["hits"]
    reference = json.loads(run_cli("search", "--index", str(adi_index), *text).stdout)["hits"]
    assert len(searched) == 10 and [h["id"] for h in searched] == [h["id"] for h in reference]
    for a, b in zip(searched, reference):  # the vectors file rounds weights to 5 decimals
        assert abs(a["score"] - b["score"]) <= 1e-3 * b["score"]

    run_cli("index", "--vectors", str(vectors), "--out", str(without))
    assert json.loads(run_cli("info", "--index", str(without), "--json").stdout)["model"] is None
    proc = run_cli("search", "--index", str(without), *text, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lsr: error: this index records no query encoder") and "--model" in lines[0]
    vector = {"library": 1.0, "computer": 0.5}
    out = json.loads(run_cli("search", "--index", str(without), "--vector", json.dumps(vector), "-k", "5", "--json").stdout)
    expected = Retriever.load(adi_index).search(vector, 5)
    assert out["query"] == vector and [h["id"] for h in out["hits"]] == expected.ids and len(expected.ids) == 5
    bad = run_cli("search", "--index", str(without), "--vector", "[1, 2]", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("lsr: error: --vector") and "JSON object" in bad.stderr


def test_evaluate_approx_and_exhaustive_modes(adi, tmp_path):
    """`lsr evaluate --mode` takes the sparse registry modes: exhaustive scores as exact does;
    approx builds (and caches) its structure and reports its recall against exact search."""
    reports = {}
    for mode in ("exact", "exhaustive", "approx"):
        out = tmp_path / f"{mode}.json"
        proc = run_cli("evaluate", "--dataset", "adi", "--model", "splade-tiny", "--mode", mode, "--no-efficiency",
                       "--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs" / mode), "--output", str(out))
        assert proc.returncode == 0
        for metric in ("nDCG@10", "R@100"):
            assert any(line.strip().startswith(f"{metric}: ") for line in proc.stdout.splitlines()), proc.stdout
        reports[mode] = json.loads(out.read_text())
        assert reports[mode]["system"]["mode"] == mode
        assert (tmp_path / "runs" / mode / "adi" / ("splade-tiny.trec" if mode == "exact" else f"splade-tiny-{mode}.trec")).is_file()
    exact, exhaustive, approx = reports["exact"], reports["exhaustive"], reports["approx"]
    assert set(exact["metrics"]) == set(exhaustive["metrics"]) and 0 < exact["metrics"]["nDCG@10"] <= 1
    assert exhaustive["metrics"] == exact["metrics"]
    assert exhaustive["efficiency"]["recall_vs_exact"] == 1.0
    cached = {mode: Path(r["system"]["index"]["path"]) for mode, r in reports.items()}
    cached = {mode: p if p.is_absolute() else PROJECT_ROOT / p for mode, p in cached.items()}
    assert cached["exact"] == cached["exhaustive"] != cached["approx"]  # one index per build, shared by the modes
    assert (cached["approx"] / "collection.json").is_file() and "approx" in Retriever.load(cached["approx"]).segments.parts
    assert "approx" not in Retriever.load(cached["exact"]).segments.parts
    assert 0.9 <= approx["efficiency"]["recall_vs_exact"] <= 1.0
    assert all(0 <= v <= 1 for v in approx["metrics"].values()) and set(approx["metrics"]) == set(exact["metrics"])
