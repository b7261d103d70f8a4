"""The settings of a training run, importable without torch (the CLI builds its flags from them)."""

from __future__ import annotations

from dataclasses import dataclass

from lsr.encoders.models import DEFAULT_DENSE, DEFAULT_SPLADE

NEGATIVE_SOURCES = ("bm25", "splade", "none")
DISTILLATION = ("none", "kl", "margin-mse")
# ``teacher`` naming the start model itself, frozen: self-distillation keeps a sparsified model's
# ranking near where it began while FLOPS prunes its weights.
START_TEACHER = "start"
# FLOPS on the document vectors: SPLADE's, or the IDF-aware one of Geng et al. 2024 (each term's
# mean weight divided by its IDF over the training corpus: common terms cost more).
FLOPS_KINDS = ("plain", "idf")
# How queries are weighted in training: the masked LM (SPLADE's query side), or inference-free,
# a query's distinct tokens times a learned vocabulary-sized vector (written as idf.json), trained
# with the document model (``learned``) or alone, the document model frozen (``learned-only``).
QUERY_WEIGHTS = ("model", "learned", "learned-only")


@dataclass
class TrainConfig:
    """Everything a run depends on (written to ``<out>/training.json``).

    ``l0_mask`` > 0: the document FLOPS counts only documents with more than that many non-zeros
    (the l0 mask of Shen et al. 2025), so short documents are not pushed sparser still.
    """

    out: str
    model: str = DEFAULT_SPLADE
    steps: int = 1000
    batch_size: int = 16
    lr: float = 2e-5
    warmup_steps: int = 100
    max_length: int = 128
    query_max_length: int = 32
    negatives: str = "bm25"
    negatives_depth: int = 50
    flops_query: float = 3e-4
    flops_document: float = 1e-4
    flops_warmup: int = 300
    flops_kind: str = "plain"
    l0_mask: int = 0
    query_weights: str = "model"
    query_weights_lr: float = 5e-3
    distill: str = "none"
    teacher: str = DEFAULT_DENSE
    distill_weight: float = 1.0
    teacher_temperature: float = 0.05
    teacher_scale: float = 20.0
    checkpoint_every: int = 0
    seed: int = 0
    threads: int | None = None

    def check(self) -> None:
        for name in ("steps", "batch_size", "max_length", "query_max_length", "negatives_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "flops_query", "flops_document", "distill_weight", "warmup_steps", "flops_warmup", "checkpoint_every",
                     "l0_mask", "query_weights_lr"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.negatives not in NEGATIVE_SOURCES:
            raise ValueError(f"negatives must be one of {', '.join(NEGATIVE_SOURCES)}, got {self.negatives!r}")
        if self.flops_kind not in FLOPS_KINDS:
            raise ValueError(f"flops_kind must be one of {', '.join(FLOPS_KINDS)}, got {self.flops_kind!r}")
        if self.query_weights not in QUERY_WEIGHTS:
            raise ValueError(f"query_weights must be one of {', '.join(QUERY_WEIGHTS)}, got {self.query_weights!r}")
        if self.distill not in DISTILLATION:
            raise ValueError(f"distill must be one of {', '.join(DISTILLATION)}, got {self.distill!r}")
        if self.distill == "margin-mse" and self.negatives == "none":
            raise ValueError("margin-mse distils the positive / hard-negative margin: it needs negatives (bm25 or splade)")
