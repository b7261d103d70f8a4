"""BM25 on our engine: Lucene-English analysis, Lucene's BM25 weights and length norms, query encoding."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lsr.encoders import BM25Encoder, LuceneEnglishAnalyzer, load_encoder
from lsr.encoders.bm25 import LUCENE_ENGLISH_STOPWORDS, byte_to_length, length_to_byte
from lsr.encoders.porter import porter_stem
from lsr.pipeline import build_index
from lsr.retrieval import Retriever

from conftest import shared_dataset

# Expected values below were produced by Lucene itself (Anserini 1.7.1's fatjar, through pyserini):
# Analyzer(get_lucene_analyzer()).analyze(text), PorterStemmer, SmallFloat.intToByte4/byte4ToInt.
LUCENE_ANALYSIS = {
    "The U.S.A.'s 3.14 1,000 foo_bar e-mail Hello-World's running ponies caresses relational İSTANBUL x² café":
        ["u.s.a", "s", "3.14", "1,000", "foo_bar", "e", "mail", "hello", "world", "run", "poni", "caress", "relat",
         "istanbul", "x", "café"],
    "Assembly of technology possibly: generalization, logical analogies; hopefulness & agreed-upon 5'UTR":
        ["assembl", "technolog", "possibl", "gener", "logic", "analog", "hope", "agre", "upon", "5", "utr"],
    "don't it's THEIR ÉCOLE naïve résumé ΣΊΣΥΦΟΣ 東京タワー co-operate e.g. www.example.com user@mail.org 2024-01-05":
        ["don't", "école", "naïv", "résumé", "σίσυφοσ", "東", "京", "タワー", "co", "oper", "e.g", "www.example.com",
         "user", "mail.org", "2024", "01", "05"],
}
LUCENE_STEMS = {
    "caresses": "caress", "ponies": "poni", "ties": "ti", "cats": "cat", "feed": "feed", "agreed": "agre",
    "disabled": "disabl", "matting": "mat", "mating": "mate", "meeting": "meet", "milling": "mill", "happy": "happi",
    "sky": "sky", "relational": "relat", "conditional": "condit", "rational": "ration", "valenci": "valenc",
    "digitizer": "digit", "conformabli": "conform", "radicalli": "radic", "differentli": "differ", "vileli": "vile",
    "analogousli": "analog", "vietnamization": "vietnam", "operator": "oper", "feudalism": "feudal",
    "decisiveness": "decis", "hopefulness": "hope", "callousness": "callous", "formaliti": "formal",
    "sensitiviti": "sensit", "sensibiliti": "sensibl", "triplicate": "triplic", "formative": "form",
    "formalize": "formal", "electriciti": "electr", "electrical": "electr", "goodness": "good", "revival": "reviv",
    "allowance": "allow", "inference": "infer", "airliner": "airlin", "gyroscopic": "gyroscop",
    "adjustable": "adjust", "defensible": "defens", "irritant": "irrit", "replacement": "replac",
    "dependent": "depend", "adoption": "adopt", "homologous": "homolog", "communism": "commun", "activate": "activ",
    "angulariti": "angular", "effective": "effect", "bowdlerize": "bowdler", "probate": "probat", "rate": "rate",
    "cease": "ceas", "controll": "control", "roll": "roll", "generalization": "gener", "oscillators": "oscil",
    # Lucene's (reference) Porter: -bli -> -ble and -logi -> -log, unlike Snowball's "porter"
    "assembly": "assembl", "technology": "technolog", "possibly": "possibl", "analogies": "analog",
    "archaeology": "archaeolog", "bled": "bled", "sing": "sing", "yes": "ye", "is": "is", "us": "us", "a": "a",
}
LUCENE_NORMS = {0: (0, 0), 1: (1, 1), 23: (23, 23), 24: (24, 24), 31: (31, 31), 40: (40, 40), 41: (40, 40),
                100: (57, 96), 161: (64, 152), 255: (70, 248), 1000: (87, 984), 4096: (103, 3864),
                12345: (116, 12312), 100000: (140, 98328)}


@pytest.mark.parametrize("text", list(LUCENE_ANALYSIS))
def test_analyzer_matches_lucene(text):
    assert LuceneEnglishAnalyzer()(text) == LUCENE_ANALYSIS[text]


def test_porter_matches_lucene():
    assert {w: porter_stem(w) for w in LUCENE_STEMS} == LUCENE_STEMS


def test_stopwords_are_lucenes_33():
    assert len(LUCENE_ENGLISH_STOPWORDS) == 33 and {"the", "a", "with", "will", "such"} <= LUCENE_ENGLISH_STOPWORDS
    assert "not" in LUCENE_ENGLISH_STOPWORDS and "from" not in LUCENE_ENGLISH_STOPWORDS


def test_analyzer_options():
    assert LuceneEnglishAnalyzer(stopwords="none", stemmer="none")("The Running dogs") == ["the", "running", "dogs"]
    assert LuceneEnglishAnalyzer(stopwords=["dogs"])("the dogs ran") == ["the", "ran"]
    assert LuceneEnglishAnalyzer(max_token_length=4).tokenize("abcdefghij") == ["abcd", "efgh", "ij"]
    with pytest.raises(ValueError):
        LuceneEnglishAnalyzer(stemmer="krovetz")
    with pytest.raises(ValueError):
        LuceneEnglishAnalyzer(stopwords="french")


def test_length_norm_encoding_matches_lucene():
    for n, (byte, decoded) in LUCENE_NORMS.items():
        assert length_to_byte(n) == byte and byte_to_length(byte) == decoded
    lengths = [byte_to_length(b) for b in range(256)]
    assert lengths == sorted(lengths) and len(set(lengths)) == 256


def _direct_bm25(docs_terms, query_terms, k1, b, exact_norms):
    """Lucene's BM25 written out plainly, for one query against every document."""
    n = sum(1 for t in docs_terms if t)
    avgdl = sum(len(t) for t in docs_terms) / n
    df = Counter(term for terms in docs_terms for term in set(terms))
    scores = []
    for terms in docs_terms:
        dl = len(terms) if exact_norms else byte_to_length(length_to_byte(len(terms)))
        tf = Counter(terms)
        s = 0.0
        for term, count in Counter(query_terms).items():
            if tf[term]:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                s += count * idf * tf[term] / (tf[term] + k1 * (1 - b + b * dl / avgdl))
        scores.append(s)
    return scores


@pytest.mark.parametrize("norms", ["exact", "lucene"])
def test_scores_equal_direct_formula(norms):
    rng = np.random.default_rng(7)
    words = ["apple", "banana", "cherry", "grape", "lemon", "mango", "olive", "peach", "plum", "berry"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 80)), p=np.linspace(2, 0.2, 10) / 11)) for _ in range(60)]
    texts.append("")  # an empty document: no postings, not counted in N
    enc = BM25Encoder(k1=1.2, b=0.75, norms=norms)
    vecs = enc.encode_documents(texts)
    ids = [f"d{i}" for i in range(len(texts))]
    index = Retriever.build(vecs, ids, model="bm25", encoder_settings=enc.settings())  # the encoder is loaded from what is recorded
    analyzer = LuceneEnglishAnalyzer()
    docs_terms = [analyzer(t) for t in texts]
    for query in ["apple plum plum", "berry", "mango olive peach grape"]:
        expected = _direct_bm25(docs_terms, analyzer(query), 1.2, 0.75, exact_norms=norms == "exact")
        got = index.search(query, k=len(ids))
        got_scores = dict(zip(got.ids, got.scores))
        tolerance = 4 * len(set(analyzer(query))) * index.index.scale + 1e-5  # u16 quantization of each impact
        for i, doc in enumerate(ids):
            assert abs(got_scores.get(doc, 0.0) - expected[i]) <= tolerance
        order = [ids[i] for i in np.argsort(-np.asarray(expected), kind="stable") if expected[i] > 0]
        assert got.ids[:5] == order[:5]
    assert enc.stats["doc_count"] == 60 and enc.stats["num_docs"] == 61


def test_lucene_norms_change_long_documents_only():
    short = ["alpha beta " * 5, "beta gamma " * 6]  # 10 and 12 terms: stored exactly
    exact = BM25Encoder(norms="exact").encode_documents(short)
    lucene = BM25Encoder(norms="lucene").encode_documents(short)
    np.testing.assert_array_equal(exact.values, lucene.values)
    long = ["alpha beta " * 50, "beta gamma " * 3]  # 100 terms -> decoded as 96
    assert not np.array_equal(BM25Encoder(norms="exact").encode_documents(long).values,
                              BM25Encoder(norms="lucene").encode_documents(long).values)


def test_saved_bm25_index_answers_text_queries(tmp_path: Path):
    corpus = tmp_path / "corpus.jsonl"
    docs = [("a", "Cats", "The cats are sleeping on the sofa."), ("b", "", "Dogs bark at cats."), ("c", "Birds", "Birds sing.")]
    corpus.write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs))
    built, summary = build_index(tmp_path / "idx", corpus=corpus, model="bm25")
    assert isinstance(built, Retriever) and summary["num_docs"] == 3 and summary["model"] == "bm25"
    assert built.collection is not None and (tmp_path / "idx" / "collection.json").is_file()  # a one-segment collection
    stored = built.collection.get("a")
    assert (stored.title, stored.text) == ("Cats", "The cats are sleeping on the sofa.")
    index = Retriever.load(tmp_path / "idx")
    assert index.collection is not None and len(index.segments.indexes) == 1
    assert index.manifest["model"] == "bm25"
    assert index.manifest["encoder"]["analyzer"]["stemmer"] == "porter"
    hits = index.search("sleeping cat", k=3)
    assert hits.ids[0] == "a" and set(hits.ids) == {"a", "b"}
    assert index.search("zebra unicorn", k=3).ids == []  # unknown terms match nothing
    assert index.encoder.vocab == index.vocab
    q = index.encoder.encode_queries(["cat cats dog"]).to_dict(0)
    assert q == {"cat": 2.0, "dog": 1.0}
    again = built.search("sleeping cat", k=3)  # the retriever build_index returns searches the same collection
    assert again.ids == hits.ids and again.scores == hits.scores


def test_load_encoder():
    enc = load_encoder("bm25", vocab=["cat", "dog"], k1=1.0, b=0.5, doc_count=10, analyzer={"name": "lucene-english", "stemmer": "none"})
    assert (enc.k1, enc.b, enc.analyzer.stemmer) == (1.0, 0.5, "none")
    assert enc.encode_queries(["dog and cats dog"]).to_dict(0) == {"dog": 2.0}  # over the vocab given (no stemming: "cats" unknown)
    # without a vocabulary it is a document encoder: it fixes its vocabulary from the corpus...
    docs = load_encoder("bm25", k1=1.0, b=0.5)
    with pytest.raises(ValueError, match="needs the index vocabulary"):
        docs.encode_queries(["cat"])  # ...and, before that, cannot encode queries (they would match nothing)
    vecs = docs.encode_documents(["the cat sat", "a dog barked"])
    assert docs.vocab == list(vecs.vocab) and set(docs.vocab) == {"cat", "sat", "dog", "bark"}
    assert docs.encode_queries(["cats"]).to_dict(0) == {"cat": 1.0}


def test_scifact_bm25_matches_pyserini_published(tmp_path: Path):
    """Our BM25 on SciFact vs pyserini's published BEIR flat BM25 (nDCG@10 0.6789)."""
    root = shared_dataset("scifact")
    from lsr.data import load_collection
    from lsr.evaluation.metrics import evaluate

    index, _ = build_index(None, corpus=root, model="bm25", show_progress_bar=False)
    assert isinstance(index, Retriever) and index.collection is None and index.path is None  # in memory: nothing saved
    c = load_collection(root)
    results = index.search_batch([q.text for q in c.queries], k=100)
    run = {q.id: dict(zip(r.ids, r.scores)) for q, r in zip(c.queries, results)}
    ndcg = evaluate(run, c.qrels, ["nDCG@10"]).scores["nDCG@10"]
    assert abs(ndcg - 0.6789) < 0.01, ndcg
