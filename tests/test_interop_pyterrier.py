"""The PyTerrier transformer: lsr's hits as a ranking frame, and a small pt.Experiment on ADI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pt = pytest.importorskip("pyterrier", reason="python-terrier is not installed (pip install '.[test]')")
pd = pytest.importorskip("pandas")

from lsr.data import load_qrels, load_queries  # noqa: E402
from lsr.evaluation.metrics import evaluate  # noqa: E402
from lsr.retrieval import Retriever  # noqa: E402
from tests.conftest import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def bm25_index(adi: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pt") / "bm25"
    run_cli("index", "--corpus", str(adi), "--model", "bm25", "--out", str(out))
    return out


@pytest.fixture(scope="module")
def topics(adi: Path) -> pd.DataFrame:
    return pd.DataFrame([{"qid": q.id, "query": q.text} for q in load_queries(adi)])


@pytest.fixture(scope="module")
def qrels(adi: Path) -> pd.DataFrame:
    q = load_qrels(adi / "qrels" / "test.tsv")
    return pd.DataFrame([{"qid": qid, "docno": d, "label": rel} for qid, docs in q.judgments.items() for d, rel in docs.items()])


def test_ranking_frame_equals_search_batch(adi_index: Path, topics: pd.DataFrame):
    from lsr.integrations.pyterrier import LsrRetriever

    res = LsrRetriever(adi_index, num_results=10).transform(topics)
    assert list(res.columns) == ["qid", "query", "docno", "score", "rank"]
    want = Retriever.load(adi_index).search_batch(list(topics["query"]), k=10)
    for (qid, group), r in zip(res.groupby("qid", sort=False), want):
        assert list(group["docno"]) == r.ids and list(group["rank"]) == list(range(len(r.ids)))
        np.testing.assert_allclose(group["score"], r.scores)
    assert list(res["qid"].unique()) == list(topics["qid"])


def test_pre_encoded_query_toks(adi_index: Path, topics: pd.DataFrame):
    """Searching by query_toks (the encoder's own weights) gives what searching by text gives."""
    from lsr.integrations.pyterrier import LsrRetriever

    retriever = Retriever.load(adi_index)
    encoded = retriever.encode_queries(list(topics["query"][:5]))
    toks = topics[:5].assign(query_toks=[{retriever.vocab[t]: float(w) for t, w in zip(*encoded.row(i))} for i in range(5)])
    transformer = LsrRetriever(retriever, num_results=5)
    by_toks, by_text = transformer.transform(toks), transformer.transform(topics[:5])
    assert list(by_toks["docno"]) == list(by_text["docno"])
    np.testing.assert_allclose(by_toks["score"], by_text["score"], rtol=1e-6)
    assert "query_toks" in by_toks.columns


def test_bad_frames_one_clear_error(adi_index: Path):
    from lsr.integrations.pyterrier import LsrRetriever

    with pytest.raises(ValueError, match="needs the columns qid and query or query_toks"):
        LsrRetriever(adi_index).transform(pd.DataFrame({"qid": ["1"]}))
    with pytest.raises(ValueError, match="query_toks must be a"):
        LsrRetriever(adi_index).transform(pd.DataFrame({"qid": ["1"], "query_toks": ["not a dict"]}))
    with pytest.raises(ValueError, match="has no knob 'x'"):
        LsrRetriever(adi_index, x=1)


def test_experiment_on_adi(adi: Path, adi_index: Path, bm25_index: Path, topics: pd.DataFrame, qrels: pd.DataFrame, tmp_path: Path):
    """pt.Experiment over lsr SPLADE, lsr BM25 and (with pyterrier-pisa) PISA's BM25; lsr's
    figures equal lsr's own evaluation of the same runs."""
    from lsr.integrations.pyterrier import LsrRetriever

    systems, names = [LsrRetriever(adi_index), LsrRetriever(bm25_index)], ["lsr splade-tiny", "lsr bm25"]
    try:
        from pyterrier_pisa import PisaIndex
    except ImportError:
        pass  # PISA's BM25 joins the comparison when pyterrier-pisa (the bench extra) is installed
    else:
        pisa = PisaIndex(str(tmp_path / "pisa"))
        docs = [json.loads(line) for line in (adi / "corpus.jsonl").read_text().splitlines()]
        pisa.indexer().index([{"docno": d["_id"], "text": f"{d.get('title', '')} {d['text']}"} for d in docs])
        systems.append(pisa.bm25(num_results=1000))
        names.append("pisa bm25")
    table = pt.Experiment(systems, topics, qrels, eval_metrics=["ndcg_cut_10", "map"], names=names)
    assert list(table["name"]) == names
    assert ((table["ndcg_cut_10"] > 0) & (table["ndcg_cut_10"] <= 1)).all()
    for system, row in zip(systems[:2], table.itertuples()):
        res = system.transform(topics)
        run = {qid: dict(zip(g["docno"], g["score"])) for qid, g in res.groupby("qid")}
        ours = evaluate(run, load_qrels(adi / "qrels" / "test.tsv"), ["nDCG@10", "AP"], query_ids=list(topics["qid"]))
        assert ours.scores["nDCG@10"] == pytest.approx(row.ndcg_cut_10, abs=1e-9)
        assert ours.scores["AP"] == pytest.approx(row.map, abs=1e-9)
