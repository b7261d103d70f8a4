"""Cross-encoder teachers for `lsr train`'s distillation: a model that reads a (query, document)
pair and gives one relevance logit.

A ``--teacher`` (a folder or a Hugging Face id) is a cross-encoder when its ``config.json`` names a
``*ForSequenceClassification`` architecture with ``num_labels == 1``: what a sentence-transformers
``CrossEncoder`` saves, and what ``AutoModelForSequenceClassification`` loads with one logit. Any
other model is taken as a dense bi-encoder; a sequence classifier with more labels is refused
(which label would be relevance?).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lsr.encoders.models import resolve_model
from lsr.errors import LsrError


def is_cross_encoder(model: str) -> bool:
    """Whether ``model``'s config is a one-logit sequence classifier (reads only its config)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model(model))
    if not any(a.endswith("ForSequenceClassification") for a in config.architectures or []):
        return False
    if config.num_labels != 1:
        raise LsrError(f"teacher {model!r} is a classifier with {config.num_labels} labels; a cross-encoder teacher gives one logit")
    return True


class CrossEncoderTeacher:
    """A frozen cross-encoder scoring (query, document) pairs by its raw logit: the scale MarginMSE
    distils margins on (a sentence-transformers CrossEncoder's sigmoid would squash them)."""

    def __init__(self, model: str, max_length: int, batch_size: int = 32) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        location = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(location)
        self.model = AutoModelForSequenceClassification.from_pretrained(location).eval()
        self.model.requires_grad_(False)
        self.max_length = max_length
        self.batch_size = batch_size

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> torch.Tensor:
        """Logit of each pair ``(queries[i], docs[i])``, as a 1-D float tensor."""
        out = []
        with torch.no_grad():
            for i in range(0, len(queries), self.batch_size):
                tok = self.tokenizer(list(queries[i:i + self.batch_size]), list(docs[i:i + self.batch_size]), truncation=True,
                                     max_length=self.max_length, padding=True, return_tensors="pt")
                out.append(self.model(**tok).logits[:, 0])
        return torch.cat(out) if out else torch.zeros(0)
