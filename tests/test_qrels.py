"""Qrels, topics, runs and query encodings: formats, bad input, and the official counts of every shared set."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from lsr.data import iter_run_rows, load_collection, load_qrels, load_topics, read_run, run_description, write_qrels, write_run
from lsr.data.beir import shared_data_dirs
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
        assert (q.source, q.query_ids, q.relevant_query_ids(), q.relevant_query_ids(level=2)) == (str(f), ["q1", "q2"], ["q1"], [])
    restricted = load_qrels(trec).restrict(["q2", "q9"])
    assert (restricted.judgments, len(restricted)) == ({"q2": {"d3": -1}}, 1)
    out = tmp_path / "out.tsv"
    write_qrels(out, load_qrels(trec), fmt="beir")
    assert out.read_text() == "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td3\t-1\n"
    write_qrels(out, {"q1": {"d1": 2}}, fmt="trec")
    assert out.read_text() == "q1 0 d1 2\n"
    with pytest.raises(ValueError, match="fmt must be"):
        write_qrels(out, {"q1": {"d1": 2}}, fmt="csv")


@pytest.mark.parametrize(
    "content, message",
    [
        ("q1\td1\n", "qrels.txt:1: expected 'query-id<TAB>corpus-id<TAB>score' or 'qid iter docno rel', got 'q1\\td1'"),
        ("q1 0 d1 high\n", "qrels.txt:1: relevance must be an integer, got 'high'"),
        ("q1 0 d1 1\nq1 0 d1 2\n", "qrels.txt:2: query 'q1' judges document 'd1' twice (first on line 1)"),
        ("q1\t\t1\n", "qrels.txt:1: empty query or document id"),
        ("q1 0 d1 1\nquery-id\tcorpus-id\tscore\n", "qrels.txt:2: relevance must be an integer, got 'score'"),  # a header only first
        ("", "qrels.txt: no judgments"),
        ("query-id\tcorpus-id\tscore\n", "qrels.txt: no judgments"),
    ],
)
def test_bad_qrels(tmp_path: Path, content, message):
    f = tmp_path / "qrels.txt"
    f.write_text(content)
    with pytest.raises(DataError, match=re.escape(message)):
        load_qrels(f)


def test_missing_qrels_file(tmp_path: Path):
    with pytest.raises(DataError, match=re.escape(f"no qrels file at {tmp_path / 'nope.tsv'}")):
        load_qrels(tmp_path / "nope.tsv")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path} is a folder; give the qrels file")):
        load_qrels(tmp_path)
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "x"}\n')
    with pytest.raises(DataError, match=re.escape(f"no qrels file for split 'test' in {tmp_path}: looked for test.tsv, test.txt")):
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
    jsonl_gz = tmp_path / "queries.test.jsonl.gz"
    with gzip.open(jsonl_gz, "wt") as f:
        f.write('{"_id": "1", "text": "first query"}\n\n{"_id": 2, "text": "second"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "first query"}\n{"_id": "2", "text": "second"}\n')
    for f in (tsv, gz, jsonl_gz, tmp_path):  # a folder: its queries.jsonl
        assert [(q.id, q.text) for q in load_topics(f)] == [("1", "first query"), ("2", "second")], f
    assert [(q.id, q.text) for q in load_topics(sgml)] == [("301", "International Organized Crime"), ("302", "Poliomyelitis and Post-Polio")]
    assert [(q.id, q.text) for q in load_topics(sgml, field="desc")] == [("301", "Identify organizations."), ("302", "Is the disease under control?")]
    assert [(q.id, q.text) for q in load_topics(sgml, field="narr")] == [("301", "A relevant document..."), ("302", "")]
    with pytest.raises(ValueError, match="field must be one of"):
        load_topics(sgml, field="body")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("d.tsv", "1\ta\n1\tb\n", "d.tsv:2: duplicate query id '1' (first on line 1)"),
        ("d.tsv", "1\ta\nno tab\n", "d.tsv:2: expected 'qid<TAB>text'"),
        ("d.jsonl", '{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}\n', "d.jsonl:2: duplicate query id '1' (first on line 1)"),
        ("d.txt", "<top>\n<num> Number: 7\n<title> a\n</top>\n<top>\n<num> Number: 7\n<title> b\n</top>\n",
         "d.txt:5: duplicate query id '7' (first on line 1)"),
        ("d.txt", "<top>\n<title> no number\n</top>\n", "d.txt:1: missing query id"),
        ("d.txt", "<top>\n<num> 1\n<title> never closed\n", "d.txt: no <top> topics found"),
    ],
)
def test_bad_topics(tmp_path: Path, name, content, message):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(DataError, match=re.escape(message)):
        load_topics(f)
    with pytest.raises(DataError, match=re.escape(f"no topics file at {tmp_path / 'none.tsv'}")):
        load_topics(tmp_path / "none.tsv")


def test_run_round_trip_with_description(tmp_path: Path):
    run = {"q1": {"d2": 3.5, "d1": 1.25}, "q2": {"d9": 0.5}}
    f = write_run(tmp_path / "r" / "sys.trec", run, tag="my system", description={"model": "bm25", "k1": 0.9})
    assert f.read_text().splitlines() == ["q1 Q0 d2 1 3.500000 my_system", "q1 Q0 d1 2 1.250000 my_system", "q2 Q0 d9 1 0.500000 my_system"]
    back = read_run(f)
    assert back == run and [list(docs) for docs in back.values()] == [["d2", "d1"], ["d9"]]
    assert run_description(f) == {"model": "bm25", "k1": 0.9}
    assert sorted(p.name for p in f.parent.iterdir()) == ["sys.trec", "sys.trec.json"]  # no temporary file left
    assert run_description(write_run(tmp_path / "bare.trec", run)) is None
    assert list(iter_run_rows(run)) == [("q1", "d2", 3.5), ("q1", "d1", 1.25), ("q2", "d9", 0.5)]


def test_read_run_orders_best_first(tmp_path: Path):
    """Whatever the file's rank column says, documents come back by score, ties in file order."""
    f = tmp_path / "run.txt.gz"
    with gzip.open(f, "wt") as fh:
        fh.write("q1 Q0 a 1 1.0 t\nq1 Q0 b 2 2.0 t\n\nq1 Q0 c 3 2.0 t\nq2 Q0 a 1 -1.5 t\n")
    run = read_run(f)
    assert [(q, list(docs.items())) for q, docs in run.items()] == [("q1", [("b", 2.0), ("c", 2.0), ("a", 1.0)]), ("q2", [("a", -1.5)])]


@pytest.mark.parametrize(
    "content, message",
    [("q1 Q0 d1 1 1.0\n", "run.txt:1: expected 'qid Q0 docno rank score tag', got 'q1 Q0 d1 1 1.0'"),
     ("q1 Q0 d1 1 high t\n", "run.txt:1: score must be a number, got 'high'"),
     ("q1 Q0 d1 1 1.0 t\nq1 Q0 d1 2 0.5 t\n", "run.txt:2: query 'q1' retrieves document 'd1' twice")],
)
def test_bad_runs(tmp_path: Path, content, message):
    f = tmp_path / "run.txt"
    f.write_text(content)
    with pytest.raises(DataError, match=re.escape(message)):
        read_run(f)
    with pytest.raises(DataError, match=re.escape(f"no run file at {tmp_path / 'none.trec'}")):
        read_run(tmp_path / "none.trec")


def test_query_encodings_round_trip(tmp_path: Path):
    f = write_query_encodings(tmp_path / "q.tsv.gz", ["1", "2"], [{"cat": 1.234, "##s": 0.5, "tiny": 0.001}, {"dog": 2.0}])
    with gzip.open(f, "rt") as fh:
        lines = fh.read().splitlines()
    # heaviest token first, each repeated round(weight * 100) times; 'tiny' rounds to 0 and is dropped
    assert lines == ["1\t" + " ".join(["cat"] * 123 + ["##s"] * 50), "2\t" + " ".join(["dog"] * 200)]
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
    from lsr.encoders.query_encodings import encode_to_file, quantize_query
    from lsr.data.beir import Query
    from lsr.retrieval import Retriever

    docs = ["cats sleep on the sofa", "dogs bark loudly", "the stock market fell"]
    index = Retriever.build(splade_tiny.encode_documents(docs), ["a", "b", "c"], model="splade-tiny")
    queries = [Query("1", "sleeping cats"), Query("2", "stock prices")]
    f = encode_to_file(splade_tiny, queries, tmp_path / "enc.tsv")
    ids, rows = read_query_encodings(f)
    from_file = index.search_batch(rows, k=1)
    from_text = index.search_batch([q.text for q in queries], k=1)
    assert [r.ids for r in from_file] == [r.ids for r in from_text] == [["a"], ["c"]]
    # the file holds exactly the encoder's query vectors, quantized: integer repetitions as floats
    expected = [{t: float(n) for t, n in quantize_query(v).items()} for v in splade_tiny.encode_queries([q.text for q in queries]).to_dicts()]
    assert ids == ["1", "2"] and rows == expected and all(rows)
    assert all(type(t) is str and type(w) is float for row in rows for t, w in row.items())
