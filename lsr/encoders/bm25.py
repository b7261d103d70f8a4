"""BM25 as sparse vectors: a Lucene-English-like analyzer and Lucene's BM25 weights as impacts.

Documents become ``{term: BM25 term weight}`` vectors and queries bags of analyzed terms
(each term weighted by how often it occurs in the query), so that the dot product the
index computes is exactly the BM25 score of Lucene's ``BM25Similarity``::

    score(q, d) = sum over terms t of q:  count(t, q) * idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))

with ``N`` the number of documents holding at least one term, ``avgdl`` the mean number of
terms per such document, and ``dl`` the document's length *as Lucene stores it*: one byte per
document (``SmallFloat.intToByte4``), exact below 24 terms and rounded down to 4 significant
bits above. ``norms="exact"`` uses the true length instead.

The analyzer reproduces Anserini's ``DefaultEnglishAnalyzer`` (what pyserini indexes BEIR
"flat" corpora with): Unicode word segmentation (UAX #29, as Lucene's StandardTokenizer),
English possessive removal, lowercasing, Lucene's 33 English stopwords, Porter stemming.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.encoders.porter import porter_stem

BM25 = "bm25"

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (also Anserini's default for English).
LUCENE_ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)
STOPWORD_SETS = {"lucene": LUCENE_ENGLISH_STOPWORDS, "none": frozenset()}
STEMMERS = ("porter", "none")
NORMS = ("lucene", "exact")
MAX_TOKEN_LENGTH = 255  # StandardTokenizer's default: longer words are cut into pieces of this size
_APOSTROPHES = ("'", "\u2019", "\uff07")


# ---- Lucene's one-byte length encoding (org.apache.lucene.util.SmallFloat) ---------------------
def _long_to_int4(i: int) -> int:
    """Four significant bits of ``i`` (the leading one implicit) plus a 5-bit shift."""
    bits = i.bit_length()
    if bits < 4:
        return i
    shift = bits - 4
    return ((i >> shift) & 0x07) | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    mantissa, shift = i & 0x07, (i >> 3) - 1
    return mantissa if shift == -1 else (mantissa | 0x08) << shift


_NUM_FREE_VALUES = 255 - _long_to_int4(2**31 - 1)  # = 24: lengths below this are stored exactly


def length_to_byte(length: int) -> int:
    """The byte (0..255) Lucene's BM25Similarity stores as a document's length norm."""
    if length < 0:
        raise ValueError("length must be >= 0")
    if length < _NUM_FREE_VALUES:
        return length
    return _NUM_FREE_VALUES + _long_to_int4(length - _NUM_FREE_VALUES)


def byte_to_length(b: int) -> int:
    """The length Lucene decodes from a norm byte (what BM25 scoring actually uses)."""
    if b < _NUM_FREE_VALUES:
        return b
    return _NUM_FREE_VALUES + _int4_to_long(b - _NUM_FREE_VALUES)


LENGTH_TABLE = np.array([byte_to_length(b) for b in range(256)], dtype=np.float64)


def lucene_lengths(lengths: np.ndarray) -> np.ndarray:
    """Document lengths as Lucene sees them after its lossy one-byte encoding."""
    return LENGTH_TABLE[[length_to_byte(int(n)) for n in lengths]] if len(lengths) else np.zeros(0)


# ---- analysis ---------------------------------------------------------------------------------
def _regex():
    try:
        import regex
    except ImportError as e:  # a dependency of transformers, so normally present
        raise ImportError("the BM25 analyzer needs the 'regex' package (pip install regex)") from e
    return regex


@lru_cache(maxsize=1)
def _patterns():
    regex = _regex()
    # Unicode default word boundaries (UAX #29), the rules Lucene's StandardTokenizer implements.
    boundaries = regex.compile(r"\b", flags=regex.WORD | regex.V1)
    # A segment is a token when it holds a letter, a digit or an emoji; punctuation, spaces,
    # symbols and lone connectors ("_") are dropped, as StandardTokenizer drops them.
    wordlike = regex.compile(r"[\p{Alphabetic}\p{Nd}\p{Extended_Pictographic}\p{Regional_Indicator}]")
    return boundaries, wordlike


def _strip_leading_marks(segment: str) -> str:
    """Drop leading characters that join words only between letters (quotes, dots, colons)."""
    i = 0
    while i < len(segment) and unicodedata.category(segment[i])[0] not in "LNM" and unicodedata.category(segment[i]) != "Pc":
        i += 1
    return segment[i:]


@lru_cache(maxsize=4096)
def _lower_char(c: str) -> str:
    """Java's Character.toLowerCase: one code point to one code point (no special casing)."""
    low = c.lower()
    if len(low) == 1:
        return low
    return "i" if c == "\u0130" else c


def java_lowercase(token: str) -> str:
    return token.lower() if token.isascii() else "".join(_lower_char(c) for c in token)


class LuceneEnglishAnalyzer:
    """Text -> terms the way Lucene/Anserini's English analyzer turns it into index terms.

    StandardTokenizer (UAX #29 word segmentation) -> EnglishPossessiveFilter -> LowerCaseFilter
    -> StopFilter (Lucene's English stop set) -> PorterStemFilter. ``stopwords`` may be
    ``"lucene"``, ``"none"`` or an explicit list; ``stemmer`` ``"porter"`` or ``"none"``.
    """

    def __init__(
        self,
        *,
        stopwords: str | Sequence[str] = "lucene",
        stemmer: str = "porter",
        lowercase: bool = True,
        possessive: bool = True,
        max_token_length: int = MAX_TOKEN_LENGTH,
    ) -> None:
        if isinstance(stopwords, str):
            if stopwords not in STOPWORD_SETS:
                raise ValueError(f"stopwords must be one of {sorted(STOPWORD_SETS)} or a list, got {stopwords!r}")
            self._stopwords = STOPWORD_SETS[stopwords]
        else:
            self._stopwords = frozenset(stopwords)
        if stemmer not in STEMMERS:
            raise ValueError(f"stemmer must be one of {STEMMERS}, got {stemmer!r}")
        if max_token_length < 1:
            raise ValueError("max_token_length must be >= 1")
        self.stopwords = stopwords if isinstance(stopwords, str) else sorted(self._stopwords)
        self.stemmer = stemmer
        self.lowercase = lowercase
        self.possessive = possessive
        self.max_token_length = max_token_length
        self._stem = porter_stem if stemmer == "porter" else None
        self._cache: dict[str, str | None] = {}

    def settings(self) -> dict[str, Any]:
        return {
            "name": "lucene-english",
            "stopwords": self.stopwords,
            "stemmer": self.stemmer,
            "lowercase": self.lowercase,
            "possessive": self.possessive,
            "max_token_length": self.max_token_length,
        }

    def tokenize(self, text: str) -> list[str]:
        """Words of ``text`` as StandardTokenizer emits them (no filtering)."""
        boundaries, wordlike = _patterns()
        out = []
        for segment in boundaries.split(text):
            if segment and not wordlike.match(segment):
                # the regex module keeps an apostrophe (or other mid-word mark) with the letters
                # after it when a digit precedes it ("5'UTR"); UAX #29 breaks after it.
                segment = _strip_leading_marks(segment)
            if segment and wordlike.search(segment):
                if len(segment) <= self.max_token_length:
                    out.append(segment)
                else:
                    n = self.max_token_length
                    out.extend(segment[i : i + n] for i in range(0, len(segment), n))
        return out

    def normalize(self, token: str) -> str | None:
        """One token through the filter chain; ``None`` when it is a stopword."""
        try:
            return self._cache[token]
        except KeyError:
            pass
        term = token
        if self.possessive and len(term) >= 2 and term[-1] in "sS" and term[-2] in _APOSTROPHES:
            term = term[:-2]
        if self.lowercase:
            term = java_lowercase(term)
        if term in self._stopwords:
            result = None
        elif self._stem is not None:
            result = self._stem(term)
        else:
            result = term
        if len(self._cache) < 1_000_000:
            self._cache[token] = result
        return result

    def __call__(self, text: str) -> list[str]:
        """Index terms of ``text``, in order (repeats kept)."""
        terms = []
        for token in self.tokenize(text):
            term = self.normalize(token)
            if term:
                terms.append(term)
        return terms


def analyzer_from_settings(settings: Mapping[str, Any] | None) -> LuceneEnglishAnalyzer:
    settings = dict(settings or {})
    name = settings.pop("name", "lucene-english")
    if name != "lucene-english":
        raise ValueError(f"unknown analyzer {name!r}")
    return LuceneEnglishAnalyzer(**settings)


# ---- the encoder ------------------------------------------------------------------------------
class BM25Encoder:
    """BM25 document weights (Lucene's formula) and bag-of-terms queries over one vocabulary.

    ``encode_documents`` computes the collection statistics of the texts it is given (the
    whole corpus, in one call) and fixes the vocabulary; ``encode_queries`` then maps query
    terms onto it (unknown terms cannot match and are dropped). An encoder for an existing
    index is built with that index's vocabulary (see :func:`lsr.encoders.load_encoder`).
    """

    name = BM25
    sparse = True
    per_document = False  # weights need the collection's statistics

    def __init__(
        self,
        *,
        k1: float = 0.9,
        b: float = 0.4,
        norms: str = "lucene",
        analyzer: LuceneEnglishAnalyzer | Mapping[str, Any] | None = None,
        vocab: Sequence[str] | None = None,
    ) -> None:
        if not (k1 >= 0 and math.isfinite(k1)):
            raise ValueError(f"k1 must be >= 0, got {k1!r}")
        if not (0 <= b <= 1):
            raise ValueError(f"b must be in [0, 1], got {b!r}")
        if norms not in NORMS:
            raise ValueError(f"norms must be one of {NORMS}, got {norms!r}")
        self.k1 = float(k1)
        self.b = float(b)
        self.norms = norms
        self.analyzer = analyzer if isinstance(analyzer, LuceneEnglishAnalyzer) else analyzer_from_settings(analyzer)
        self.vocab: list[str] = list(vocab) if vocab is not None else []
        self._term_id = {t: i for i, t in enumerate(self.vocab)}
        self._has_vocab = vocab is not None  # given, or fixed by encode_documents
        self.stats: dict[str, Any] = {}

    def settings(self) -> dict[str, Any]:
        """What the index manifest records: enough to rebuild the query encoder and to trace scores."""
        return {"k1": self.k1, "b": self.b, "norms": self.norms, "analyzer": self.analyzer.settings(), **self.stats}

    # -- documents
    def encode_documents(self, texts: Sequence[str], **_ignored: Any) -> SparseVectors:
        """BM25 weights of every term of every text; the texts are the whole collection."""
        vocab: list[str] = []
        term_id: dict[str, int] = {}
        indptr, idx, tf, lengths = self.term_frequencies(texts, vocab, term_id)
        weights, self.stats = bm25_weights(indptr, idx, tf, lengths, len(vocab), self.k1, self.b, self.norms)
        self.vocab, self._term_id, self._has_vocab = vocab, term_id, True
        self.lengths = lengths  # analyzed terms per text: what a collection keeps to weigh later additions
        return SparseVectors(indptr, idx, weights, vocab)

    def term_frequencies(self, texts: Sequence[str], vocab: list[str], term_id: dict[str, int]):
        """CSR term frequencies (indptr, term ids ascending per row, counts) and lengths of
        ``texts``; terms new to ``vocab``/``term_id`` are appended to both."""
        if isinstance(texts, str):
            raise TypeError("encode_documents takes a sequence of texts, not a single string")
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        indices: list[int] = []
        freqs: list[int] = []
        lengths = np.zeros(len(texts), dtype=np.int64)
        for n, text in enumerate(texts):
            terms = self.analyzer(text)
            lengths[n] = len(terms)
            ids = []
            for t in terms:
                tid = term_id.get(t)
                if tid is None:
                    tid = term_id[t] = len(vocab)
                    vocab.append(t)
                ids.append(tid)
            counts = sorted(Counter(ids).items())
            indices.extend(c[0] for c in counts)
            freqs.extend(c[1] for c in counts)
            indptr[n + 1] = len(indices)
        return indptr, np.asarray(indices, dtype=np.int32), np.asarray(freqs, dtype=np.float64), lengths

    # -- queries
    def encode_queries(self, texts: Sequence[str], **_ignored: Any) -> SparseVectors:
        """Each query as ``{term: count}`` over the vocabulary (Anserini's bag-of-words query)."""
        if isinstance(texts, str):
            raise TypeError("encode_queries takes a sequence of texts, not a single string")
        if not self._has_vocab:  # every query would silently match nothing
            raise ValueError("a BM25 query encoder needs the index vocabulary: load_encoder('bm25', vocab=index.vocab), "
                             "or encode_documents first")
        return SparseVectors.from_dicts((self.query_terms(t) for t in texts), self.vocab, source="query")

    def query_terms(self, text: str) -> dict[str, float]:
        """Analyzed terms of a query with their counts (terms outside the vocabulary included)."""
        return {t: float(c) for t, c in Counter(self.analyzer(text)).items()}


def robertson_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """``ln(1 + (N - df + 0.5) / (df + 0.5))`` per term, as float32 (Lucene's BM25 idf; also the
    inference-free query weights of :mod:`lsr.encoders.inference_free`)."""
    df = np.asarray(df, np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)


def bm25_weights(
    indptr: np.ndarray,
    indices: np.ndarray,
    tf: np.ndarray,
    lengths: np.ndarray,
    vocab_size: int,
    k1: float,
    b: float,
    norms: str = "lucene",
    *,
    collection: tuple[np.ndarray, int, int] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Lucene BM25 weight of each (document, term) entry of a CSR term-frequency matrix.

    The rows are the whole collection, unless ``collection`` gives its statistics (document
    frequency per term, documents with a term, total terms) when they are only some of it (new
    documents of a living collection). Follows Lucene's BM25Similarity, including its float32
    arithmetic for idf, average length and the per-length normalisation, so weights agree with
    Lucene's to float precision.
    """
    n_docs = len(lengths)
    if collection is None:
        df = np.bincount(indices, minlength=vocab_size).astype(np.float64)
        doc_count, total_terms = int((lengths > 0).sum()), int(lengths.sum())
    else:
        df, doc_count, total_terms = np.asarray(collection[0], np.float64), int(collection[1]), int(collection[2])
    avgdl = np.float32(total_terms / doc_count) if doc_count else np.float32(1.0)
    idf = robertson_idf(df, doc_count)
    dl = lucene_lengths(lengths) if norms == "lucene" else lengths.astype(np.float64)
    norm_inverse = (1.0 / (np.float32(k1) * ((1 - np.float32(b)) + np.float32(b) * dl.astype(np.float32) / avgdl))).astype(np.float32)
    doc_of_entry = np.repeat(np.arange(n_docs), np.diff(indptr))
    term_weight = idf[indices].astype(np.float64)
    freq_norm = tf * norm_inverse[doc_of_entry].astype(np.float64)
    weights = (term_weight - term_weight / (1.0 + freq_norm)).astype(np.float32)
    stats = {
        "num_docs": n_docs,
        "doc_count": doc_count,
        "sum_total_term_freq": total_terms,
        "avg_doc_length": float(avgdl),
    }
    return weights, stats


def is_bm25(model: str | None) -> bool:
    return isinstance(model, str) and model.lower() == BM25
