"""sentence-transformers ``SparseEncoder`` folders (MLMTransformer + SpladePooling) as lsr encoders.

A folder that ``SparseEncoder.save`` wrote (or one downloaded from a hub) lists its modules in
``modules.json``: a masked-LM transformer, then ``SpladePooling`` whose ``config.json`` names the
pooling over tokens (``max`` or ``sum``) and the activation (``relu``: log(1 + ReLU(x)), or
``log1p_relu``: log(1 + log(1 + ReLU(x))), OpenSearch's variant). This reads those files only,
never importing sentence-transformers, and encodes with :class:`SpladeEncoder`'s machinery, so
the vectors equal ``SparseEncoder.encode``'s. The ``query``/``document`` prompts of
``config_sentence_transformers.json`` are prepended as sentence-transformers does.

An inference-free model is a ``Router`` (``router_config.json``) whose ``document`` route is that
pair and whose ``query`` route is a ``SparseStaticEmbedding`` (one weight per token of the
tokenizer): its queries go to :class:`~lsr.encoders.inference_free.InferenceFreeEncoder` with
those weights (the query's distinct tokens, special tokens dropped, each weighted), so text
queries need no model call, as in sentence-transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lsr.data.vectors import SparseVectors
from lsr.encoders.inference_free import InferenceFreeEncoder, wordpiece_token_ids
from lsr.encoders.splade import SpladeEncoder
from lsr.errors import LsrError

POOLINGS = ("max", "sum")
ACTIVATIONS = ("relu", "log1p_relu")


def _modules(folder: Path) -> list[dict[str, Any]]:
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise LsrError(f"{folder / 'modules.json'} cannot be read: {e}") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) and "type" in m for m in modules):
        raise LsrError(f"{folder / 'modules.json'} is not a list of modules")
    return modules


def _route(folder: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]] | None]:
    """The document modules (kind, folder) of a SparseEncoder folder and, for a Router, its query
    modules (None: queries take the document modules)."""
    modules = _modules(folder)
    kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
    if kinds != ["Router"]:
        return [(k, folder / m.get("path", "")) for k, m in zip(kinds, modules)], None
    config = _read_json(folder / "router_config.json")
    types, routes = config.get("types") or {}, config.get("structure") or {}
    if "document" not in routes:
        raise LsrError(f"{folder / 'router_config.json'}: a Router without a 'document' route")

    def modules_of(route: str) -> list[tuple[str, Path]]:
        return [(str(types.get(name, "?")).rsplit(".", 1)[-1], folder / name) for name in routes[route]]

    return modules_of("document"), modules_of("query") if "query" in routes else None


def is_st_sparse(model: str) -> bool:
    """Whether ``model`` is a local sentence-transformers sparse folder (a SpladePooling, Router
    or SparseStaticEmbedding module in its modules.json)."""
    folder = Path(model).expanduser()
    if not (folder / "modules.json").is_file():
        return False
    kinds = {str(m["type"]).rsplit(".", 1)[-1] for m in _modules(folder)}
    return bool(kinds & {"SpladePooling", "Router", "SparseStaticEmbedding"})


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class SentenceTransformersSparseEncoder(SpladeEncoder):
    """A SparseEncoder folder's MLM transformer + SpladePooling (see the module docstring).

    ``max_length`` defaults to the folder's ``max_seq_length`` (else 512) and caps queries too,
    as sentence-transformers truncates both at it.
    """

    def __init__(self, model: str, *, max_length: int | None = None, query_max_length: int | None = None, **options: Any) -> None:
        folder = Path(model).expanduser().resolve()
        document, query = _route(folder)
        kinds = [k for k, _ in document]
        if kinds not in (["MLMTransformer", "SpladePooling"], ["Transformer", "SpladePooling"]):
            raise LsrError(f"{folder}: expected the document modules MLMTransformer + SpladePooling, found {' + '.join(kinds)}")
        if query is not None and [k for k, _ in query] not in (kinds, ["SparseStaticEmbedding"]):
            raise LsrError(f"{folder}: the query route {' + '.join(k for k, _ in query)} is neither the document's modules "
                           "nor one SparseStaticEmbedding")
        transformer, pooling_dir = document[0][1], document[1][1]
        pooling = _read_json(pooling_dir / "config.json")
        self.pooling = pooling.get("pooling_strategy", "max")
        self.activation = pooling.get("activation_function", "relu")
        if self.pooling not in POOLINGS or self.activation not in ACTIVATIONS:
            raise LsrError(f"{folder}: SpladePooling {self.pooling!r}/{self.activation!r} is not one of {POOLINGS} x {ACTIVATIONS}")
        config = _read_json(transformer / "sentence_bert_config.json")
        if config.get("transformer_task", "fill-mask") != "fill-mask":
            raise LsrError(f"{folder}: the transformer's task is {config['transformer_task']!r}, SPLADE needs fill-mask")
        prompts = _read_json(folder / "config_sentence_transformers.json").get("prompts") or {}
        self.prompts = {"query": prompts.get("query", ""), "document": prompts.get("document", "")}
        limit = int(config.get("max_seq_length") or 512)
        super().__init__(str(transformer), max_length=max_length or limit, query_max_length=query_max_length or max_length or limit, **options)
        self.name = model
        self.static = _static_query_encoder(query[0][1], self.vocab) if query is not None and len(query) == 1 else None

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "pooling": self.pooling, "activation": self.activation,
                "queries": "SparseStaticEmbedding" if self.static is not None else "SpladePooling"}

    def encode_queries(self, texts: Sequence[str], **kwargs: Any) -> SparseVectors:
        if self.static is None:
            return super().encode_queries(texts, **kwargs)
        prompt = self.prompts["query"]
        return self.static.encode_queries([prompt + t for t in texts] if prompt and not isinstance(texts, str) else texts)

    def encode(self, texts: Sequence[str], *, is_query: bool = False, **kwargs: Any) -> SparseVectors:
        prompt = self.prompts["query" if is_query else "document"]
        if prompt and not isinstance(texts, str):
            texts = [prompt + t if t.strip() else t for t in texts]
        return super().encode(texts, is_query=is_query, **kwargs)

    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        weights = super()._activate(logits)
        return weights.log1p_() if self.activation == "log1p_relu" else weights

    def _encode_batch(self, batch: list[list[int]], buffer: torch.Tensor, expansion: bool = True) -> SparseVectors:
        """Max pooling takes SpladeEncoder's path (the activation is monotone, so it commutes with
        the max); sum pooling activates every real token's logits, one text at a time."""
        if self.pooling == "max":
            return super()._encode_batch(batch, buffer, expansion)
        tokens = self._transform(self._hidden(batch)).float()
        pooled = torch.empty((len(batch), len(self.vocab)), dtype=torch.float32, device=self.device)
        for i, t in enumerate(batch):
            logits = torch.addmm(self._decoder_bias, tokens[i, : len(t)], self._decoder_weight.T)
            pooled[i] = self._activate(logits).sum(dim=0)
        return self._sparsify(pooled if expansion else self._own_tokens_only(pooled, batch))


def _static_query_encoder(folder: Path, vocab: Sequence[str]) -> InferenceFreeEncoder:
    """A SparseStaticEmbedding module folder (tokenizer + one weight per token) as an
    inference-free query encoder over the document model's ``vocab``."""
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))) != list(vocab):
        raise LsrError(f"{folder}: the query tokenizer's vocabulary is not the document model's")
    weights = load_file(str(folder / "model.safetensors")).get("weight")
    if weights is None or weights.shape != (len(vocab),):
        raise LsrError(f"{folder}/model.safetensors: expected a 'weight' of {len(vocab)} token weights")
    return InferenceFreeEncoder(wordpiece_token_ids(tokenizer), weights, vocab, name="SparseStaticEmbedding", source=str(folder))
