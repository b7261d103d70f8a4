"""Inference-free query encoders: a query is its own tokens, each weighted from a table.

Inference-free learned sparse retrieval (OpenSearch's doc-only models; Geng et al., "Towards
Competitive Search Relevance For Inference-Free Learned Sparse Retrievers") encodes documents
with a model and queries with the document model's tokenizer alone: the query vector holds each
distinct token of the query (special tokens dropped) with a weight looked up per token. Query
latency is then BM25-like: no model call.

The weight table is one float per vocabulary term, from one of:

- the collection's own statistics (``idf``): ``ln(1 + (N - df + 0.5) / (df + 0.5))`` with ``N``
  live documents and ``df`` the live documents whose vector holds the term (what the index
  stores, so it follows adds and deletes; see :func:`lsr.retrieval.collection.live_document_frequencies`);
- a model folder's ``idf.json`` (``idf-json``): OpenSearch's format, ``{"token": weight, ...}``
  (tokens it does not list weigh 0 and are dropped), also what ``lsr train`` writes for learned
  per-token weights.

The API is the one a sentence-transformers inference-free model (a ``Router`` whose query side
is a ``SparseStaticEmbedding`` over the document model's tokenizer) maps onto:
``InferenceFreeEncoder(token_ids, weights, vocab)`` with ``token_ids`` the tokenizer (texts ->
term ids, see :func:`wordpiece_token_ids`) and ``weights`` the static per-token weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsr.data.vectors import SparseVectors
from lsr.errors import DataError, LsrError

# Query encoders a search may choose (``--query-encoder``), beside a model's own.
MODEL = "model"
IDF = "idf"
IDF_JSON = "idf-json"
QUERY_ENCODERS: dict[str, str] = {
    MODEL: "the index's own query encoder (SPLADE or BM25: what the documents were encoded with)",
    IDF: "inference-free: the query's distinct tokens, each weighted by the collection's IDF (no model call)",
    IDF_JSON: "inference-free: the query's distinct tokens weighted by the model folder's idf.json (OpenSearch doc-only format)",
}
IDF_FILE = "idf.json"

TokenIds = Callable[[Sequence[str]], list[np.ndarray]]
"""Texts -> each text's term ids (repeats allowed, special tokens already dropped)."""


def check_query_encoder(name: str, model: str | None = None) -> str:
    """``name`` as one of :data:`QUERY_ENCODERS` (``splade``/``bm25`` are accepted for ``model``
    when that is the index's kind), or a ValueError listing them."""
    from lsr.encoders.bm25 import is_bm25

    if name in QUERY_ENCODERS:
        return name
    if name == "bm25" and is_bm25(model) or name == "splade" and model and not is_bm25(model):
        return MODEL
    if name in ("bm25", "splade"):
        raise ValueError(f"query encoder {name!r} needs an index built with it; this one's model is {model!r} (use 'model')")
    raise ValueError(f"unknown query encoder {name!r}; query encoders: {', '.join(QUERY_ENCODERS)} (or splade/bm25 for 'model')")


def wordpiece_token_ids(tokenizer: Any) -> TokenIds:
    """A Hugging Face tokenizer as :data:`TokenIds`: no special tokens (added ones and [UNK]
    included: they carry no meaning of the text)."""
    special = np.zeros(len(tokenizer), bool)
    special[list(tokenizer.all_special_ids)] = True
    # a fast tokenizer's Rust backend directly: the Python wrapper costs more than the tokenization
    backend = tokenizer.backend_tokenizer if getattr(tokenizer, "is_fast", False) else None

    def token_ids(texts: Sequence[str]) -> list[np.ndarray]:
        if not len(texts):
            return []
        if backend is not None:
            ids = [e.ids for e in backend.encode_batch(list(texts), add_special_tokens=False)]
        else:
            ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [a[~special[a]] for a in (np.asarray(t, np.int64) for t in ids)]

    return token_ids


def analyzer_token_ids(analyzer: Callable[[str], list[str]], term_ids: Mapping[str, int]) -> TokenIds:
    """A BM25 analyzer as :data:`TokenIds` over a vocabulary (terms it lacks are dropped)."""

    def token_ids(texts: Sequence[str]) -> list[np.ndarray]:
        return [np.asarray([term_ids[t] for t in analyzer(text) if t in term_ids], np.int64) for text in texts]

    return token_ids


def document_tokenizer(model: str, vocab: Sequence[str], encoder_settings: Mapping[str, Any] | None = None
                       ) -> tuple[TokenIds, Sequence[str]]:
    """The tokenizer of the document model ``model`` and the vocabulary its ids index: a SPLADE
    model's word pieces, or BM25's analyzer over the collection's ``vocab``. No model weights
    are loaded."""
    from lsr.encoders.bm25 import analyzer_from_settings, is_bm25

    if is_bm25(model):
        analyzer = analyzer_from_settings((encoder_settings or {}).get("analyzer"))
        return analyzer_token_ids(analyzer, {t: i for i, t in enumerate(vocab)}), vocab
    from transformers import AutoTokenizer

    from lsr.encoders.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model))
    return wordpiece_token_ids(tokenizer), tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))


class InferenceFreeEncoder:
    """Queries as their distinct tokens weighted by a static table; documents are not its job.

    - ``token_ids``: the document model's tokenizer as :data:`TokenIds` (texts -> term ids over
      ``vocab``, special tokens dropped): :func:`wordpiece_token_ids` for a Hugging Face one;
    - ``weights``: one non-negative float per term of ``vocab``; a term of weight 0 is dropped
      from queries (an IDF table gives 0 to nothing it has seen; terms no document holds are
      given 0 by :meth:`from_document_frequencies`, since they cannot match);
    - ``vocab``: the term strings (the document model's vocabulary).

    Construct with :meth:`from_pretrained` (a folder or HF id holding ``idf.json``) or
    :meth:`from_document_frequencies` (a collection's statistics).
    """

    sparse = True
    per_document = True

    def __init__(self, token_ids: TokenIds, weights: np.ndarray, vocab: Sequence[str], *, name: str = IDF,
                 source: str = "weights") -> None:
        weights = np.asarray(weights, np.float32)
        if weights.shape != (len(vocab),):
            raise DataError(f"{source}: {weights.shape[0] if weights.ndim == 1 else weights.shape} weights for a vocabulary of {len(vocab)}")
        if not np.all(np.isfinite(weights)) or (weights < 0).any():
            raise DataError(f"{source}: query token weights must be finite and >= 0")
        self.token_ids = token_ids
        self.weights = weights
        self.vocab = vocab
        self.name = name
        self.source = source

    @classmethod
    def from_document_frequencies(cls, token_ids: TokenIds, vocab: Sequence[str], df: np.ndarray, n_docs: int,
                                  *, name: str = IDF) -> "InferenceFreeEncoder":
        """Weights ``ln(1 + (N - df + 0.5) / (df + 0.5))`` (``N = n_docs``), 0 where ``df`` is 0."""
        from lsr.encoders.bm25 import robertson_idf

        df = np.asarray(df)
        return cls(token_ids, np.where(df > 0, robertson_idf(df, n_docs), 0.0), vocab, name=name, source="collection IDF")

    @classmethod
    def from_pretrained(cls, model: str) -> "InferenceFreeEncoder":
        """The tokenizer and ``idf.json`` of ``model`` (a bundled name, a folder or an HF id)."""
        from transformers import AutoTokenizer

        from lsr.encoders.models import resolve_model

        location = resolve_model(model)
        tokenizer = AutoTokenizer.from_pretrained(location)
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        weights = read_idf_json(_idf_file(location, model), tokenizer.get_vocab().get, len(vocab))
        return cls(wordpiece_token_ids(tokenizer), weights, vocab, name=IDF_JSON, source=f"{model}/{IDF_FILE}")

    def with_weights(self, weights: np.ndarray) -> "InferenceFreeEncoder":
        """The same tokenizer with another table (a collection's IDF after a commit)."""
        return type(self)(self.token_ids, weights, self.vocab, name=self.name, source=self.source)

    def settings(self) -> dict[str, Any]:
        return {"query_encoder": self.name}

    def encode_documents(self, texts: Sequence[str], **_ignored: Any) -> SparseVectors:
        raise DataError("an inference-free encoder weighs queries only: documents are encoded by the document model")

    def encode_queries(self, texts: Sequence[str], **_ignored: Any) -> SparseVectors:
        """Each text's distinct tokens with their table weights (terms of weight 0 dropped)."""
        if isinstance(texts, str):
            raise TypeError("encode_queries takes a sequence of texts, not a single string")
        ids = self.token_ids(texts)
        rows = np.repeat(np.arange(len(ids), dtype=np.int64), [len(a) for a in ids])
        keys = np.unique(rows * len(self.vocab) + np.concatenate(ids)) if ids else np.zeros(0, np.int64)
        rows, terms = np.divmod(keys, len(self.vocab))
        weights = self.weights[terms]
        keep = weights > 0
        rows, terms, weights = rows[keep], terms[keep], weights[keep]
        indptr = np.zeros(len(ids) + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=len(ids)), out=indptr[1:])
        return SparseVectors(indptr, terms.astype(np.int32), weights.astype(np.float32), self.vocab)


def token_idf(token_ids: TokenIds, texts: Sequence[str], vocab_size: int) -> np.ndarray:
    """Every term's ``ln(1 + (N - df + 0.5) / (df + 0.5))`` over ``texts`` (``N`` texts, ``df``
    the texts whose tokens hold the term; a term none holds gets the largest value): the IDF
    ``lsr train`` weighs its penalty and starts learned query weights with, from a corpus's
    text (not from vectors: there is no index yet)."""
    from lsr.encoders.bm25 import robertson_idf

    df = np.zeros(vocab_size, np.int64)
    for ids in token_ids(texts):
        df[np.unique(ids)] += 1
    return robertson_idf(df, len(texts))


def read_idf_json(path: Path, token_id: Callable[[str], int | None], vocab_size: int) -> np.ndarray:
    """A vocabulary-sized weight vector from an OpenSearch ``idf.json`` (``{token: weight}``);
    tokens it does not list weigh 0; a token the tokenizer lacks, or a bad weight, is an error."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read the token weights: {e}") from None
    if not isinstance(table, dict):
        raise DataError(f"{path}: expected a JSON object {{token: weight}}")
    weights = np.zeros(vocab_size, np.float32)
    for token, weight in table.items():
        i = token_id(token)
        if i is None or not 0 <= i < vocab_size:
            raise DataError(f"{path}: token {token!r} is not in the tokenizer's vocabulary")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight) or weight < 0:
            raise DataError(f"{path}: token {token!r} has weight {weight!r}; weights are finite numbers >= 0")
        weights[i] = weight
    return weights


def write_idf_json(path: str | Path, weights: np.ndarray, vocab: Sequence[str]) -> Path:
    """Write per-token weights as an ``idf.json`` (non-zero ones), the file :meth:`InferenceFreeEncoder.from_pretrained` reads."""
    path = Path(path)
    path.write_text(json.dumps({vocab[i]: float(weights[i]) for i in np.flatnonzero(weights)}, ensure_ascii=False), encoding="utf-8")
    return path


def _idf_file(location: str, model: str) -> Path:
    folder = Path(location)
    if folder.is_dir():
        if not (folder / IDF_FILE).is_file():
            raise LsrError(f"model {model!r} has no {IDF_FILE} in {folder}: use the query encoder 'idf' (the collection's IDF)")
        return folder / IDF_FILE
    from huggingface_hub import hf_hub_download  # an HF id: the file comes from the hub

    return Path(hf_hub_download(repo_id=location, filename=IDF_FILE))
