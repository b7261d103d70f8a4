"""The inference-free query encoder: a query's distinct tokens weighted by the collection's IDF
(equal to a direct computation, before and after adds, deletes and merges) or by an idf.json."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lsr.data import iter_corpus, load_queries
from lsr.encoders.bm25 import LuceneEnglishAnalyzer
from lsr.encoders.inference_free import IDF_FILE, InferenceFreeEncoder, check_query_encoder
from lsr.encoders.models import splade_tiny_path
from lsr.errors import DataError, LsrError
from lsr.index import SparseIndex
from lsr.pipeline import build_index
from lsr.retrieval import Retriever
from lsr.retrieval.collection import Collection


def _idf(df: int, n: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _doc_frequencies(rows: list[set]) -> Counter:
    return Counter(t for r in rows for t in r)


def _expected(tokenizer, text: str, df: Counter, n: int) -> dict[str, float]:
    """The query's distinct word pieces, special tokens dropped, each with its IDF (unmatched ones dropped)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids)
    tokens = {tokenizer.convert_ids_to_tokens(i) for i in ids if i not in special}
    return {t: _idf(df[t], n) for t in tokens if df[t] > 0}


def _assert_same(got: dict[str, float], want: dict[str, float]) -> None:
    assert got.keys() == want.keys()
    for t, w in want.items():
        assert got[t] == pytest.approx(w, rel=1e-6), t


@pytest.fixture(scope="module")
def adi_docs(adi):
    return list(iter_corpus(adi / "corpus.jsonl"))


@pytest.fixture(scope="module")
def adi_queries(adi):
    return [q.text for q in load_queries(adi)]


@pytest.fixture(scope="module")
def adi_vectors(splade_tiny, adi_docs):
    return splade_tiny.encode_documents([d.contents for d in adi_docs])


def _terms_of(vectors, rows) -> list[set]:
    return [{vectors.vocab[t] for t in vectors.row(i)[0]} for i in rows]


def test_idf_query_equals_direct_computation(splade_tiny, adi_docs, adi_queries, adi_vectors):
    index = SparseIndex.build(adi_vectors, [d.id for d in adi_docs], model="splade-tiny", encoder_settings=splade_tiny.settings())
    retriever = Retriever(index)
    df = _doc_frequencies(_terms_of(adi_vectors, range(len(adi_docs))))
    encoded = retriever.encode_queries(adi_queries, query_encoder="idf")
    for i, text in enumerate(adi_queries):
        _assert_same(encoded.to_dict(i), _expected(splade_tiny.tokenizer, text, df, len(adi_docs)))
    # special tokens in the text are dropped, repeats count once
    got = retriever.encode_queries(["[CLS] retrieval retrieval [SEP] [MASK]"], query_encoder="idf").to_dict(0)
    assert got == pytest.approx({"retrieval": _idf(df["retrieval"], len(adi_docs))})
    # the default query encoder stays the model's; the inference-free one is chosen per query
    assert retriever.encode_queries(adi_queries[:1]).to_dict(0) != encoded.to_dict(0)


def test_idf_follows_adds_deletes_and_merges(tmp_path, splade_tiny, adi_docs, adi_vectors):
    ids = [d.id for d in adi_docs]
    rows_of = {d: i for i, d in enumerate(ids)}
    terms = _terms_of(adi_vectors, range(len(ids)))
    probe = ["computer retrieval of documents", "the automatic indexing of scientific articles"]

    def check(retriever: Retriever, live: list[str]) -> None:
        df = _doc_frequencies([terms[rows_of[d]] for d in live])
        encoded = retriever.encode_queries(probe, query_encoder="idf")
        for i, text in enumerate(probe):
            _assert_same(encoded.to_dict(i), _expected(splade_tiny.tokenizer, text, df, len(live)))

    collection = Collection.create(tmp_path / "c", model="splade-tiny")
    retriever = Retriever(collection)
    collection.add(adi_docs[:50])
    collection.commit()
    check(retriever, ids[:50])
    deleted = collection.delete(ids[:12])
    assert deleted["not_found"] == []
    collection.add(adi_docs[50:])
    collection.commit()
    live = ids[12:]
    check(retriever, live)  # the same Retriever: its IDF is that of the generation it searches
    collection.optimize()
    check(retriever, live)
    collection.close()
    check(Retriever.load(tmp_path / "c"), live)  # what a reader opening it later sees


def test_idf_on_bm25_index_uses_its_analyzer(adi, adi_docs):
    retriever, _ = build_index(None, corpus=adi, model="bm25", show_progress_bar=False)
    analyzer = LuceneEnglishAnalyzer()
    df = _doc_frequencies([set(analyzer(d.contents)) for d in adi_docs])
    n = len(adi_docs)
    text = "What problems and concerns are there in making up descriptive titles, titles and titles?"
    want = {t: _idf(df[t], n) for t in set(analyzer(text)) if df[t] > 0}
    _assert_same(retriever.encode_queries([text], query_encoder="idf").to_dict(0), want)


def _model_folder(tmp_path: Path, idf: dict | None) -> Path:
    """A copy of splade-tiny's folder (weights linked), with an idf.json when given."""
    folder = tmp_path / "doc-only"
    folder.mkdir()
    for f in splade_tiny_path().iterdir():
        if f.name in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"):
            (folder / f.name).symlink_to(f)
    if idf is not None:
        (folder / IDF_FILE).write_text(json.dumps(idf))
    return folder


def test_idf_json_weights_are_the_files(tmp_path, splade_tiny, adi_docs, adi_vectors):
    table = {"retrieval": 3.5, "computer": 1.25, "of": 0.0, "[CLS]": 9.0}
    folder = _model_folder(tmp_path, table)
    encoder = InferenceFreeEncoder.from_pretrained(str(folder))
    got = encoder.encode_queries(["Computer retrieval of text", "nothing listed here"])
    assert got.to_dict(0) == {"retrieval": 3.5, "computer": 1.25}  # unlisted and zero-weight tokens dropped
    assert got.to_dict(1) == {}
    index = SparseIndex.build(adi_vectors, [d.id for d in adi_docs], model=str(folder), encoder_settings=splade_tiny.settings())
    retriever = Retriever(index)
    result = retriever.search("computer retrieval", 5, query_encoder="idf-json")
    direct = retriever.search({"computer": 1.25, "retrieval": 3.5}, 5)
    assert result.ids == direct.ids and result.scores == pytest.approx(direct.scores)


@pytest.mark.parametrize("table, message", [
    ({"notawordpiece!!": 1.0}, "not in the tokenizer's vocabulary"),
    ({"retrieval": -1.0}, "weights are finite numbers >= 0"),
    ({"retrieval": "high"}, "weights are finite numbers >= 0"),
    (["retrieval"], "expected a JSON object"),
])
def test_bad_idf_json_is_one_clear_error(tmp_path, table, message):
    folder = _model_folder(tmp_path, table)
    with pytest.raises(DataError, match=message):
        InferenceFreeEncoder.from_pretrained(str(folder))


def test_missing_idf_json_says_what_to_use(tmp_path):
    with pytest.raises(LsrError, match="no idf.json.*query encoder 'idf'"):
        InferenceFreeEncoder.from_pretrained(str(_model_folder(tmp_path, None)))


def test_query_encoder_choice_errors(adi_docs, adi_vectors):
    ids = [d.id for d in adi_docs]
    with pytest.raises(ValueError, match="unknown query encoder 'tfidf'"):
        check_query_encoder("tfidf", "splade-tiny")
    assert check_query_encoder("splade", "splade-tiny") == "model"
    with pytest.raises(ValueError, match="needs an index built with it"):
        check_query_encoder("bm25", "splade-tiny")
    no_model = Retriever(SparseIndex.build(adi_vectors, ids))
    with pytest.raises(DataError, match="needs the document model's tokenizer"):
        no_model.encode_queries(["computer"], query_encoder="idf")
    retriever = Retriever(SparseIndex.build(adi_vectors, ids, model="splade-tiny"))
    with pytest.raises(ValueError, match="query_weighting must be true or false"):
        retriever.encode_queries(["computer"], query_encoder="idf", query_weighting="no")
    with pytest.raises(DataError, match="documents are encoded by the document model"):
        retriever.query_encoder("idf").encode_documents(["a document"])


def test_index_default_and_rest_per_request(tmp_path, adi, adi_queries):
    out = tmp_path / "adi-idf"
    retriever, _ = build_index(out, corpus=adi, model="splade-tiny", show_progress_bar=False, query={"encoder": "idf"})
    assert Retriever.load(out).query_defaults == {"encoder": "idf", "expansion": True, "weighting": True}
    query = adi_queries[0]
    by_idf = Retriever.load(out).search(query, 10)
    by_model = Retriever.load(out).search(query, 10, query_encoder="splade")
    assert by_idf.ids == retriever.search(query, 10, query_encoder="idf").ids != by_model.ids
    with TestClient(__import__("lsr.service", fromlist=["create_app"]).create_app(str(out))) as client:
        default = client.post("/search", json={"query": query, "k": 10}).json()
        model = client.post("/search", json={"query": query, "k": 10, "query_encoder": "splade"}).json()
        binary = client.post("/search/batch", json={"queries": [{"query": query}], "k": 10, "query_weighting": False}).json()
        bad = client.post("/search", json={"query": query, "query_encoder": "tfidf"})
    assert default["ids"] == by_idf.ids and model["ids"] == by_model.ids
    assert binary["results"][0]["ids"] == Retriever.load(out).search(query, 10, query_weighting=False).ids
    assert bad.status_code == 422 and "query_encoder" in bad.text
    with pytest.raises(ValueError, match="unknown query setting"):
        build_index(tmp_path / "x", corpus=adi, model="bm25", query={"expand": False})
    assert not (tmp_path / "x").exists()


def test_weights_must_fit_the_vocabulary():
    with pytest.raises(DataError, match="3 weights for a vocabulary of 2"):
        InferenceFreeEncoder(lambda texts: [], np.ones(3), ["a", "b"])
    with pytest.raises(DataError, match="finite and >= 0"):
        InferenceFreeEncoder(lambda texts: [], np.array([1.0, np.nan]), ["a", "b"])
