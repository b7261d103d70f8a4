"""Dense encoder: a transformer's token states, mean-pooled over real tokens, L2-normalized.

This is what sentence-transformers computes for models saved with a mean-pooling and a
normalize module (all-MiniLM-L6-v2 and most of its family), written against plain
``transformers`` so that lsr does not need sentence-transformers at run time. Inner products
of the unit vectors are cosine similarities, which is what the faiss index ranks by.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lsr.encoders.models import DEFAULT_DENSE, resolve_model
from lsr.encoders.splade import CHARS_PER_TOKEN
from lsr.util import machine_threads

# Used when the model folder has no sentence_bert_config.json saying how far it was trained.
_FALLBACK_MAX_LENGTH = 512


class DenseEncoder:
    """Encode texts into unit-length float32 vectors (one row per text).

    ``model`` is ``"all-MiniLM-L6-v2"`` (the bundled offline copy), a local folder or a
    Hugging Face id. ``max_length`` defaults to the model's ``max_seq_length`` from its
    sentence-transformers config (256 for MiniLM), so outputs match sentence-transformers.
    Queries and documents are encoded alike: the model is symmetric.
    """

    sparse = False
    per_document = True

    def __init__(
        self,
        model: str = DEFAULT_DENSE,
        *,
        max_length: int | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        location = resolve_model(model)
        self.name = model
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.threads = threads or machine_threads()
        torch.set_num_threads(self.threads)
        self.tokenizer = AutoTokenizer.from_pretrained(location)
        self.model = AutoModel.from_pretrained(location).to(self.device).eval()
        self.max_length = max_length or _configured_max_length(location, self.tokenizer.model_max_length)
        if self.max_length < 2:
            raise ValueError("max_length must be >= 2")
        self.dim = int(self.model.config.hidden_size)

    def settings(self) -> dict[str, int]:
        """What an index manifest records, so that queries are encoded as the documents were."""
        return {"max_length": self.max_length, "dim": self.dim}

    def encode_queries(self, texts: Sequence[str], **kwargs) -> np.ndarray:
        return self.encode(texts, **kwargs)

    def encode_documents(self, texts: Sequence[str], **kwargs) -> np.ndarray:
        return self.encode(texts, **kwargs)

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, show_progress_bar: bool | None = None) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors, in input order.

        Texts are batched by token length, so that a batch pads little.
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not a single string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        batch_size = batch_size or self.batch_size
        cut = self.max_length * CHARS_PER_TOKEN  # the tokenizer would read all of a huge text
        token_ids = self.tokenizer([t[:cut] for t in texts], truncation=True, max_length=self.max_length)["input_ids"]
        order = np.argsort([-len(t) for t in token_ids], kind="stable")
        if show_progress_bar is None:
            show_progress_bar = len(texts) >= 1000
        with torch.inference_mode(), tqdm(total=len(texts), desc="encoding (dense)", unit="text", disable=not show_progress_bar) as bar:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                out[rows] = self._encode_batch([token_ids[i] for i in rows])
                bar.update(len(rows))
        return out

    def _encode_batch(self, batch: list[list[int]]) -> np.ndarray:
        padded = self.tokenizer.pad({"input_ids": batch}, return_tensors="pt")
        mask = padded["attention_mask"].to(self.device)
        hidden = self.model(input_ids=padded["input_ids"].to(self.device), attention_mask=mask)[0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), p=2, dim=1).cpu().numpy()


def _configured_max_length(location: str, tokenizer_max: int) -> int:
    """The sequence length a sentence-transformers model folder declares, else the tokenizer's (capped)."""
    config = Path(location) / "sentence_bert_config.json"
    if config.is_file():
        declared = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
        if declared:
            return int(declared)
    return min(int(tokenizer_max), _FALLBACK_MAX_LENGTH)
