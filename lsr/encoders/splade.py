"""SPLADE encoder: masked-LM logits -> log(1 + ReLU) -> max over the tokens of each text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lsr.data.vectors import SparseVectors
from lsr.encoders.models import DEFAULT_SPLADE, resolve_model
from lsr.util import machine_threads

# Token rows projected onto the vocabulary per matrix product (1024 x 30522 floats = 125 MB).
# Few large products beat many cache-sized ones (1024 vocabulary columns per product use 35% less
# CPU on an idle machine) as soon as other processes compete for the cores: every product is a
# parallel region whose threads wait for each other, and a thread that loses its core makes its
# partner wait a scheduler slice. On a loaded 2-core machine the tiled version fell below the
# old one (2 vs 5 docs/s on SciFact) while this one gave 9.
_TOKENS_PER_PRODUCT = 1024
# No word piece is longer than this many characters (with its spaces), so text past
# max_length x CHARS_PER_TOKEN characters can never reach the model: it is cut before
# tokenizing, which bounds the work of one text whatever its size.
CHARS_PER_TOKEN = 32


class SpladeEncoder:
    """Encode texts into SPLADE sparse vectors over the model's word-piece vocabulary.

    The output equals the textbook SPLADE-max (``max_t log(1 + relu(logits_t))`` over
    non-padding tokens) but is computed cheaper. The vocabulary projection dominates a small
    model's cost, so: its bias and the activation come after the max (adding a per-term
    constant and ``log1p . relu`` are monotone, so the orders agree), which activates a (texts,
    vocabulary) tensor instead of a (tokens, vocabulary) one; padding slots repeat a real token,
    which cannot change the max, and texts of similar length share one large product.
    """

    sparse = True
    per_document = True

    def __init__(
        self,
        model: str = DEFAULT_SPLADE,
        *,
        max_length: int = 256,
        query_max_length: int = 64,
        batch_size: int = 32,
        top_k: int | None = None,
        document_expansion: bool = True,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        if max_length < 2 or query_max_length < 2:
            raise ValueError("max_length and query_max_length must be >= 2")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if top_k is not None and top_k < 1:
            raise ValueError("top_k must be >= 1 or None")
        self.name = model
        self.max_length = max_length
        self.query_max_length = query_max_length
        self.batch_size = batch_size
        self.top_k = top_k
        self.document_expansion = bool(document_expansion)
        self.device = torch.device(device)
        self.threads = threads or machine_threads()
        torch.set_num_threads(self.threads)

        location = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(location)
        self.model = AutoModelForMaskedLM.from_pretrained(location, use_safetensors=True).to(self.device).eval()
        self._transform, decoder = _mlm_head(self.model)
        self._decoder_weight = decoder.weight.detach().float()
        vocab_size = self._decoder_weight.shape[0]
        bias = decoder.bias if decoder.bias is not None else torch.zeros(vocab_size)
        self._decoder_bias = bias.detach().float().to(self.device)
        self.vocab: list[str] = self.tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
        self._special_ids = torch.tensor(sorted(set(self.tokenizer.all_special_ids)), dtype=torch.long)

    def settings(self) -> dict[str, Any]:
        """What an index manifest records, so that queries are encoded as the documents were."""
        return {"max_length": self.max_length, "query_max_length": self.query_max_length, "top_k": self.top_k,
                "document_expansion": self.document_expansion}

    def encode_queries(self, texts: Sequence[str], *, expansion: bool = True, **kwargs) -> SparseVectors:
        """Query vectors; without ``expansion`` only the query's own tokens keep their weights
        (the Unified framework's "no query expansion")."""
        return self.encode(texts, is_query=True, expansion=expansion, **kwargs)

    def encode_documents(self, texts: Sequence[str], **kwargs) -> SparseVectors:
        """Document vectors; with ``document_expansion=False`` only their own tokens keep weights."""
        return self.encode(texts, is_query=False, expansion=self.document_expansion, **kwargs)

    def encode(
        self,
        texts: Sequence[str],
        *,
        is_query: bool = False,
        expansion: bool = True,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> SparseVectors:
        """Encode ``texts`` in batches of similar length; rows come back in input order.
        Without ``expansion`` a text keeps only the weights of its own (non-special) tokens.

        Blank texts get empty vectors: a model would otherwise give them weights drawn
        from the special tokens alone, matching documents on nothing they contain.
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not a single string")
        batch_size = batch_size or self.batch_size
        max_length = self.query_max_length if is_query else self.max_length
        texts = [t[: max_length * CHARS_PER_TOKEN] for t in texts]  # the tokenizer would read all of a huge text
        token_ids = self.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"] if len(texts) else []
        blank = np.array([not t.strip() for t in texts], dtype=bool)
        order = np.argsort([-len(t) for t in token_ids], kind="stable")
        order = order[~blank[order]]
        if show_progress_bar is None:
            show_progress_bar = len(texts) >= 1000
        parts: list[SparseVectors] = []
        # One logits buffer for all batches: a fresh 125 MB tensor per batch costs ~0.1 s of page faults.
        longest = max(map(len, token_ids), default=0)
        rows = min(len(order) * longest, max(_TOKENS_PER_PRODUCT, longest))
        buffer = torch.empty(len(self.vocab) * rows, dtype=torch.float32, device=self.device)
        with torch.inference_mode(), tqdm(
            total=len(texts), desc="encoding queries" if is_query else "encoding", unit="text",
            disable=not show_progress_bar,
        ) as bar:
            for start in range(0, len(order), batch_size):
                batch = [token_ids[i] for i in order[start : start + batch_size]]
                parts.append(self._encode_batch(batch, buffer, expansion))
                bar.update(len(batch))
        parts.append(SparseVectors(np.zeros(int(blank.sum()) + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), self.vocab))
        # Rows are encoded in `order` then the blank ones; put each back at its input position.
        position = np.concatenate([order, np.flatnonzero(blank)])
        return SparseVectors.concat(parts).take(np.argsort(position, kind="stable"))

    def _hidden(self, batch: list[list[int]]) -> torch.Tensor:
        """The encoder's last hidden states of a batch of token id lists, right-padded."""
        width = max(len(t) for t in batch)
        pad_id = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, t in enumerate(batch):
            ids[i, : len(t)] = torch.tensor(t)
            mask[i, : len(t)] = 1
        return self.model.base_model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))[0]

    def _encode_batch(self, batch: list[list[int]], buffer: torch.Tensor, expansion: bool = True) -> SparseVectors:
        lengths = [len(t) for t in batch]
        width = max(lengths)
        hidden = self._hidden(batch)
        # Padding slots take their text's last token instead: a duplicate cannot change a max,
        # and the texts keep one common width, so a single product covers several of them.
        last = torch.minimum(torch.arange(width), torch.tensor(lengths)[:, None] - 1).to(self.device)
        tokens = self._transform(hidden[torch.arange(len(batch), device=self.device)[:, None], last]).float()
        weights = self._activate(self._max_logits(tokens, buffer) + self._decoder_bias)
        return self._sparsify(weights if expansion else self._own_tokens_only(weights, batch))

    def _own_tokens_only(self, weights: torch.Tensor, batch: list[list[int]]) -> torch.Tensor:
        """Each text's weights on its own tokens, special tokens excluded; others set to 0."""
        own = torch.zeros_like(weights, dtype=torch.bool)
        for i, t in enumerate(batch):
            own[i, torch.tensor(t, dtype=torch.long)] = True
        own[:, self._special_ids] = False
        return weights.where(own, torch.zeros((), dtype=weights.dtype))

    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        """SPLADE's log(1 + ReLU(x)), in place."""
        return logits.relu_().log1p_()

    def _sparsify(self, weights: torch.Tensor) -> SparseVectors:
        """Pooled (texts, vocabulary) weights as CSR rows, cut to ``top_k`` terms if set."""
        if self.top_k is not None and self.top_k < weights.shape[1]:
            kth = torch.topk(weights, self.top_k, dim=1).values[:, -1:]
            weights = torch.where(weights >= kth, weights, torch.zeros_like(weights))
        return _to_csr(weights.cpu(), self.vocab)

    def _max_logits(self, tokens: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
        """Max over each text's tokens (texts, width, hidden) of the bias-free vocabulary projection.

        ``buffer`` holds the logits of one product: vocabulary x ``_TOKENS_PER_PRODUCT`` floats
        (or one text's tokens, if more).
        """
        n, width, dim = tokens.shape
        per_product = max(1, _TOKENS_PER_PRODUCT // width)
        vocab_size = self._decoder_weight.shape[0]
        pooled = torch.empty((n, vocab_size), dtype=torch.float32, device=self.device)
        for lo in range(0, n, per_product):
            group = tokens[lo : lo + per_product]
            logits = buffer[: vocab_size * group.shape[0] * width].view(vocab_size, -1)
            torch.mm(self._decoder_weight, group.reshape(-1, dim).T, out=logits)
            pooled[lo : lo + group.shape[0]] = logits.view(vocab_size, group.shape[0], width).amax(dim=2).T
        return pooled


def _to_csr(weights: torch.Tensor, vocab: Sequence[str]) -> SparseVectors:
    rows, cols = torch.nonzero(weights, as_tuple=True)
    indptr = np.zeros(weights.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows.numpy(), minlength=weights.shape[0]), out=indptr[1:])
    return SparseVectors(indptr, cols.numpy().astype(np.int32), weights[rows, cols].numpy().astype(np.float32), vocab)


def _mlm_head(model: torch.nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.nn.Linear]:
    """A masked-LM's head split into the per-token transform and the vocabulary projection.

    The caller applies the projection itself, to add the bias only after the max.
    """
    if hasattr(model, "cls"):  # BERT
        return model.cls.predictions.transform, model.cls.predictions.decoder
    if hasattr(model, "lm_head"):  # RoBERTa, XLM-R, ...
        head = model.lm_head
        return lambda h: head.layer_norm(torch.nn.functional.gelu(head.dense(h))), head.decoder
    if hasattr(model, "vocab_projector"):  # DistilBERT
        return lambda h: model.vocab_layer_norm(model.activation(model.vocab_transform(h))), model.vocab_projector
    raise ValueError(f"unsupported masked-LM architecture {type(model).__name__}: no known MLM head")
