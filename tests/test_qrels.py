"""Qrels, topics, runs and query encodings: formats, bad input, and the official counts of every shared set."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from lsr.data.beir import shared_data_dirs
from lsr.data.qrels import load_collection, load_qrels, load_topics, read_run, run_description, write_qrels, write_run
from lsr.encoders.query_encodings import read_query_encodings, write_query_encodings
from lsr.errors import DataError


def _shared(path: str) -> Path:
    for d in shared_data_dirs():
        if (d / path).exists():
            return d / path
    pytest.skip(f"{path} not found in {[str(d) for d in shared_data_dirs()]} (../shared/data is absent)")


# (test queries, qrels lines). Queries: BEIR's official test-set sizes. Qrels: the lines of the
# castorini/anserini-tools files that pyserini's BEIR figures are computed with; they equal
# BEIR's / ir_datasets' counts except trec-covid (ir_datasets: 66,336) and webis-touche2020
# (ir_datasets v2: 2,214; Anserini keeps only the positive judgments).
BEIR_COUNTS = {
    "arguana": (1406, 1406), "bioasq": (500, 2359), "climate-fever": (1535, 4681),
    "cqadupstack-android": (699, 1696), "cqadupstack-english": (1570, 3765), "cqadupstack-gaming": (1595, 2263),
    "cqadupstack-gis": (885, 1114), "cqadupstack-mathematica": (804, 1358), "cqadupstack-physics": (1039, 1933),
    "cqadupstack-programmers": (876, 1675), "cqadupstack-stats": (652, 913), "cqadupstack-tex": (2906, 5154),
    "cqadupstack-unix": (1072, 1693), "cqadupstack-webmasters": (506, 1395), "cqadupstack-wordpress": (541, 744),
    "dbpedia-entity": (400, 43515), "fever": (6666, 7937), "fiqa": (648, 1706), "hotpotqa": (7405, 14810),
    "nfcorpus": (323, 12334), "nq": (3452, 4201), "quora": (10000, 15675), "scidocs": (1000, 29928),
    "scifact": (300, 339), "signal1m": (97, 1899), "trec-covid": (50, 66334), "trec-news": (57, 15655),
    "webis-touche2020": (49, 932),
}
# MS MARCO passage: (queries, judged queries, qrels lines, relevance level of the official evaluation)
MSMARCO_COUNTS = {
    "msmarco-passage/dev/small": (6980, 6980, 7437, 1),
    "msmarco-passage/trec-dl-2019/judged": (43, 43, 9260, 2),
    "msmarco-passage/trec-dl-2020/judged": (54, 54, 11386, 2),
}


@pytest.mark.parametrize("name", sorted(BEIR_COUNTS))
def test_beir_queries_and_qrels_counts(name):
    root = _shared(f"beir-queries-qrels/{name}")
    c = load_collection(root)
    queries, lines = BEIR_COUNTS[name]
    assert (len(c.queries), len(c.qrels)) == (queries, lines)
    assert len(c.judged_queries) == queries  # every test query is judged
    assert c.corpus is None
    assert load_collection(name).ignore_identical_ids == (name in ("arguana", "quora"))


def test_every_shared_beir_set_is_counted():
    root = _shared("beir-queries-qrels")
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(BEIR_COUNTS)


def test_cqadupstack_total():
    assert sum(q for n, (q, _) in BEIR_COUNTS.items() if n.startswith("cqadupstack")) == 13145


@pytest.mark.parametrize("ds_id", sorted(MSMARCO_COUNTS))
def test_msmarco_counts(ds_id):
    _shared("msmarco-passage")
    c = load_collection(ds_id)
    queries, judged, lines, level = MSMARCO_COUNTS[ds_id]
    assert (len(c.queries), len(c.judged_queries), len(c.qrels), c.relevance_level) == (queries, judged, lines, level)


def test_dl20_all_topics_and_split_names():
    _shared("msmarco-passage")
    c = load_collection("msmarco-passage", "dl20")
    assert (len(c.queries), len(c.judged_queries)) == (200, 54)
    assert len(load_collection("msmarco-passage", "dev-small").queries) == 6980
    with pytest.raises(DataError, match="qrels available: dev-small.tsv, dl19.tsv, dl20.tsv"):
        load_collection("msmarco-passage")  # no 'test' split


def test_full_collections_and_beir_ids():
    _shared("scifact")
    for name in ("scifact", "beir/scifact/test"):
        c = load_collection(name)
        assert (len(c.queries), len(c.qrels), c.corpus.name) == (300, 339, "corpus.jsonl")
    cacm = load_collection("cacm")
    assert (len(cacm.queries), len(cacm.judged_queries)) == (64, 52)
    assert load_collection("beir/cqadupstack/android/test").name == "cqadupstack-android"


def test_anserini_splade_query_encodings():
    root = _shared("msmarco-passage/splade-query-encodings")
    ids, rows = read_query_encodings(root / "topics.dl19-passage.splade-pp-ed.tsv.gz")
    assert len(ids) == 43 and ids[0] == "156493"
    assert rows[0]["gold"] == 3002 and all(w >= 1 and float(w).is_integer() for w in rows[0].values())
    ids, _ = read_query_encodings(root / "topics.msmarco-passage.dev-subset.splade-v3.tsv.gz")
    assert len(ids) == 6980


# ---- formats and bad input ------------------------------------------------------------------
def test_qrels_formats(tmp_path: Path):
    beir = tmp_path / "a.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td3\t-1\n")
    trec = tmp_path / "b.txt"
    trec.write_text("q1 0 d1 1\nq1 0 d2 0\n\nq2 0 d3 -1\n")
    gz = tmp_path / "c.txt.gz"
    with gzip.open(gz, "wt") as f:
        f.write("q1 0 d1 1\nq1 0 d2 0\nq2 0 d3 -1\n")
    for f in (beir, trec, gz):
        q = load_qrels(f)
        assert q.judgments == {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": -1}} and len(q) == 3
        assert q.relevant_query_ids() == ["q1"]
    out = tmp_path / "out.tsv"
    write_qrels(out, load_qrels(trec), fmt="beir")
    assert load_qrels(out).judgments == load_qrels(trec).judgments


@pytest.mark.parametrize(
    "content, message",
    [
        ("q1\td1\n", "expected"),
        ("q1 0 d1 high\n", "relevance must be an integer"),
        ("q1 0 d1 1\nq1 0 d1 2\n", "twice"),
        ("", "no judgments"),
        ("query-id\tcorpus-id\tscore\n", "no judgments"),
    ],
)
def test_bad_qrels(tmp_path: Path, content, message):
    f = tmp_path / "qrels.txt"
    f.write_text(content)
    with pytest.raises(DataError, match=message):
        load_qrels(f)


def test_missing_qrels_file(tmp_path: Path):
    with pytest.raises(DataError, match="no qrels file"):
        load_qrels(tmp_path / "nope.tsv")
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "x"}\n')
    with pytest.raises(DataError, match="no qrels file for split 'test'"):
        load_collection(tmp_path)


def test_topic_formats(tmp_path: Path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("1\tfirst query\n2\tsecond\n")
    gz = tmp_path / "t.tsv.gz"
    with gzip.open(gz, "wt") as f:
        f.write("1\tfirst query\n2\tsecond\n")
    sgml = tmp_path / "topics.301.txt"
    sgml.write_text(
        "<top>\n<num> Number: 301\n<title> International Organized Crime\n\n<desc> Description:\nIdentify organizations.\n"
        "<narr> Narrative:\nA relevant document...\n</top>\n\n<top>\n<num> Number: 302\n<title> Poliomyelitis and Post-Polio\n"
        "<desc> Description:\nIs the disease under control?\n</top>\n"
    )
    assert [(q.id, q.text) for q in load_topics(tsv)] == [("1", "first query"), ("2", "second")]
    assert [(q.id, q.text) for q in load_topics(gz)] == [("1", "first query"), ("2", "second")]
    assert [(q.id, q.text) for q in load_topics(sgml)] == [("301", "International Organized Crime"), ("302", "Poliomyelitis and Post-Polio")]
    assert load_topics(sgml, field="desc")[1].text == "Is the disease under control?"
    dup = tmp_path / "d.tsv"
    dup.write_text("1\ta\n1\tb\n")
    with pytest.raises(DataError, match="duplicate"):
        load_topics(dup)


def test_run_round_trip_with_description(tmp_path: Path):
    run = {"q1": {"d2": 3.5, "d1": 1.25}, "q2": {"d9": 0.5}}
    f = write_run(tmp_path / "r" / "sys.trec", run, tag="my system", description={"model": "bm25", "k1": 0.9})
    lines = f.read_text().splitlines()
    assert lines[0] == "q1 Q0 d2 1 3.500000 my_system" and len(lines) == 3
    assert read_run(f) == run
    assert run_description(f) == {"model": "bm25", "k1": 0.9}


@pytest.mark.parametrize(
    "content, message",
    [("q1 Q0 d1 1 1.0\n", "expected 'qid Q0 docno rank score tag'"), ("q1 Q0 d1 1 high t\n", "score must be a number"),
     ("q1 Q0 d1 1 1.0 t\nq1 Q0 d1 2 0.5 t\n", "twice")],
)
def test_bad_runs(tmp_path: Path, content, message):
    f = tmp_path / "run.txt"
    f.write_text(content)
    with pytest.raises(DataError, match=message):
        read_run(f)


def test_query_encodings_round_trip(tmp_path: Path):
    f = write_query_encodings(tmp_path / "q.tsv.gz", ["1", "2"], [{"cat": 1.234, "##s": 0.5, "tiny": 0.001}, {"dog": 2.0}])
    with gzip.open(f, "rt") as fh:
        first = fh.readline().rstrip("\n")
    qid, tokens = first.split("\t")
    assert qid == "1" and tokens.split().count("cat") == 123 and tokens.split().count("##s") == 50 and "tiny" not in tokens
    ids, rows = read_query_encodings(f)
    assert ids == ["1", "2"] and rows == [{"cat": 123.0, "##s": 50.0}, {"dog": 200.0}]
    bad = tmp_path / "bad.tsv"
    bad.write_text("1 cat cat\n")
    with pytest.raises(DataError, match="expected 'qid<TAB>token"):
        read_query_encodings(bad)
    with pytest.raises(DataError, match="whitespace"):
        write_query_encodings(tmp_path / "x.tsv", ["1"], [{"a b": 1.0}])


def test_query_encodings_search_a_splade_index(splade_tiny, tmp_path: Path):
    """Precomputed encodings (written by our SPLADE encoder in Anserini's format) search like the texts."""
    from lsr.encoders.query_encodings import encode_to_file
    from lsr.data.beir import Query
    from lsr.index import Index

    docs = ["cats sleep on the sofa", "dogs bark loudly", "the stock market fell"]
    index = Index.build(splade_tiny.encode_documents(docs), ["a", "b", "c"], model="splade-tiny")
    queries = [Query("1", "sleeping cats"), Query("2", "stock prices")]
    f = encode_to_file(splade_tiny, queries, tmp_path / "enc.tsv")
    ids, rows = read_query_encodings(f)
    from_file = index.search_batch(rows, k=1)
    from_text = index.search_batch([q.text for q in queries], k=1)
    assert [r.ids for r in from_file] == [r.ids for r in from_text] == [["a"], ["c"]]
    assert json.loads(json.dumps(rows))  # plain data
