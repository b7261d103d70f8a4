"""SPLADE fine-tuning on CPU: contrastive loss over in-batch and mined hard negatives, FLOPS
regularization, optional distillation from a dense or cross-encoder teacher, optionally learned
inference-free query weights; Hugging Face checkpoints.

One step, for a batch of B (query, positive) pairs:

- every query gets one hard negative, drawn (seeded) from the top ``negatives_depth`` of our
  own BM25 (or SPLADE) index of the corpus for that query, its positives excluded;
- queries and the 2B documents go through the masked LM; a text's vector is
  ``max_t log(1 + relu(logits_t))`` over its real tokens (SPLADE-max); or, with ``query_weights``
  ``learned`` / ``learned-only``, a query is inference-free: its distinct tokens (special tokens
  dropped, no truncation: what the ``idf-json`` query encoder does) times ``relu`` of a learned
  vocabulary-sized vector, started at the training corpus's IDF (:func:`lsr.encoders.inference_free.token_idf`)
  and trained at ``query_weights_lr`` with the document model or alone (``learned-only``: the
  document model frozen); it is written as the model folder's ``idf.json``, so ``lsr index --model
  DIR`` with ``--query-encoder idf-json`` searches with it;
- InfoNCE: cross-entropy of each query's dot products with all 2B documents (its positive, its
  hard negative and every other query's documents as negatives);
- FLOPS (SPLADE v2): ``sum_j (mean_i w_ij)^2`` of the query vectors and of the document vectors,
  weighted ``flops_query`` and ``flops_document``, each weight ramped up quadratically over the
  first ``flops_warmup`` steps (``lambda_t = lambda * min(1, t / T)^2``), as SPLADE does; the
  documents' may be IDF-aware and l0-masked (:func:`flops`); learned query weights get none
  (an inference-free query has no expansion to prune);
- distillation from a teacher (default: the bundled all-MiniLM-L6-v2; any sentence-transformers
  bi-encoder folder or HF id; a cross-encoder folder or HF id (:mod:`lsr.training.teacher`), its
  logits taken as they are; or ``start``: the start model, frozen, its SPLADE dot products
  taken as they are, on the student's scale): ``kl`` (KL divergence of the student's distribution
  over the 2B documents from the teacher's, a dense teacher's cosine scores / ``teacher_temperature``)
  or ``margin-mse`` (MSE between the positive-minus-hard-negative margins, a dense teacher's times
  ``teacher_scale``; a cross-encoder then scores only those 2B pairs).

Checkpoints (``<out>/checkpoint-<step>/``) and the final model (``<out>/``) are Hugging Face
folders (``config.json``, ``model.safetensors``, tokenizer) that ``lsr index --model DIR`` loads;
each checkpoint also holds the optimizer and random states, so ``resume`` continues exactly.
The log (``train_log.jsonl``: loss parts, FLOPS, non-zeros per query and document) is plotted
to ``train_plot.png``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lsr.encoders.inference_free import IDF_FILE, token_idf, wordpiece_token_ids, write_idf_json
from lsr.encoders.models import resolve_model
from lsr.errors import DataError, LsrError
from lsr.training.config import START_TEACHER, TrainConfig
from lsr.training.data import Pair
from lsr.training.teacher import CrossEncoderTeacher, is_cross_encoder

STATE_FILE = "trainer_state.pt"
RANDOM_FILE = "random_state.json"
LOG_FILE = "train_log.jsonl"


def splade_vectors(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SPLADE-max vectors (texts, vocabulary) with gradients: max over real tokens of log(1 + relu)."""
    logits = model(input_ids=ids, attention_mask=mask).logits
    weights = torch.log1p(torch.relu(logits)) * mask.unsqueeze(-1)
    return weights.max(dim=1).values


def flops(vectors: torch.Tensor, idf: torch.Tensor | None = None, l0_mask: int = 0) -> torch.Tensor:
    """``sum_j (mean_i |w_ij| / idf_j)^2`` over a batch's texts ``i``: SPLADE's FLOPS (Paria et al.
    2020) without ``idf``; IDF-aware FLOPS (Geng et al. 2024, as sentence-transformers'
    IDFFlopsLoss computes it) with one IDF per term, so a common term's weight costs more than a
    rare one's. ``l0_mask`` > 0 (Shen et al. 2025's l0 mask): a text with at most ``l0_mask``
    non-zeros adds nothing (its row zeroed; the mean still over every text)."""
    w = vectors.abs()
    if l0_mask:
        w = w * ((w > 0).sum(dim=1, keepdim=True) > l0_mask)
    if idf is not None:
        w = w / idf
    return (w.mean(dim=0) ** 2).sum()


def static_query_vectors(ids: Sequence[np.ndarray], weights: torch.Tensor) -> torch.Tensor:
    """Inference-free query vectors (queries, vocabulary): each query's distinct tokens ``ids``
    weighted ``relu(weights)``, what the ``idf-json`` encoder computes from the idf.json written."""
    present = torch.zeros(len(ids), weights.shape[0])
    for i, a in enumerate(ids):
        present[i, torch.from_numpy(a)] = 1.0
    return present * torch.relu(weights)


def ramp(weight: float, step: int, warmup: int) -> float:
    """``weight`` ramped up quadratically over ``warmup`` steps (step counted from 1)."""
    return weight if warmup <= 0 else weight * min(1.0, step / warmup) ** 2


def mine_negatives(pairs: Sequence[Pair], corpus: str, source: str, model: str, depth: int) -> list[list[str]]:
    """Per pair, the ids of the top ``depth`` documents our ``source`` index returns for its
    query, minus the query's positives: the hard negatives a step draws from."""
    from lsr.pipeline import build_index

    retriever, _ = build_index(None, corpus=corpus, model="bm25" if source == "bm25" else model, show_progress_bar=False)
    positives: dict[str, set[str]] = {}
    for p in pairs:
        positives.setdefault(p.query, set()).add(p.positive_id or "")
    texts = list(positives)
    found = dict(zip(texts, retriever.search_batch(texts, depth + len(max(positives.values(), key=len)))))
    return [[d for d in found[p.query].ids if d not in positives[p.query]][:depth] for p in pairs]


class Trainer:
    """Fine-tune ``config.model`` on ``pairs`` (documents of ``corpus`` as hard negatives)."""

    def __init__(self, config: TrainConfig, pairs: Sequence[Pair], corpus: str | None = None) -> None:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        config.check()
        if not pairs:
            raise DataError("no training pairs")
        if config.negatives != "none" and corpus is None:
            raise DataError("hard negatives are mined from a corpus: give one, or negatives='none'")
        self.config = config
        self.pairs = list(pairs)
        self.out = Path(config.out)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.step = 0
        start = self._latest_checkpoint()
        location = str(start) if start is not None else resolve_model(config.model)
        self.tokenizer = AutoTokenizer.from_pretrained(location)
        self.model = AutoModelForMaskedLM.from_pretrained(location, use_safetensors=True)
        self.model.train()
        self.texts: dict[str, str] = {}
        if corpus is not None and (config.negatives != "none" or config.flops_kind == "idf" or config.query_weights != "model"):
            from lsr.training.data import corpus_documents

            self.texts = {d.id: d.contents for d in corpus_documents(corpus)}
        self.vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        self.token_ids = wordpiece_token_ids(self.tokenizer)
        self.idf = self.query_weights = None
        if config.flops_kind == "idf" or config.query_weights != "model":
            if len(self.vocab) != self.model.config.vocab_size:
                raise LsrError(f"{config.model}: the tokenizer has {len(self.vocab)} tokens, the model's vocabulary {self.model.config.vocab_size}")
            # IDF over the corpus (the positives when there is none), as the inference-free encoder weighs
            texts = list(self.texts.values()) or list(dict.fromkeys(p.positive for p in self.pairs))
            self.idf = torch.from_numpy(token_idf(self.token_ids, texts, len(self.vocab)))
        groups = []
        if config.query_weights == "learned-only":
            self.model.requires_grad_(False)
            self.model.eval()  # frozen: documents are encoded as the index will encode them
        else:
            groups.append({"params": list(self.model.parameters()), "lr": config.lr})
        if config.query_weights != "model":
            self.query_weights = torch.nn.Parameter(self.idf.clone())
            # no weight decay: it would shrink every token's weight, the ones no query holds too
            groups.append({"params": [self.query_weights], "lr": config.query_weights_lr, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / config.warmup_steps) if config.warmup_steps else 1.0)
        self.negatives: list[list[str]] = [[] for _ in self.pairs]
        if config.negatives != "none":
            self.negatives = mine_negatives(self.pairs, corpus, config.negatives, config.model, config.negatives_depth)
            if not any(self.negatives):
                raise DataError("mining found no negative for any query: is the corpus the one the pairs come from?")
        self.teacher: Any = None  # a DenseEncoder or a CrossEncoderTeacher
        self.start_model = None
        if config.distill != "none" and config.teacher == START_TEACHER:
            # the start model even when resuming: the anchor must not move with the student
            self.start_model = AutoModelForMaskedLM.from_pretrained(resolve_model(config.model), use_safetensors=True).eval()
            self.start_model.requires_grad_(False)
        elif config.distill != "none" and is_cross_encoder(config.teacher):
            self.teacher = CrossEncoderTeacher(config.teacher, config.query_max_length + config.max_length)
        elif config.distill != "none":
            from lsr.encoders.dense import DenseEncoder

            self.teacher = DenseEncoder(config.teacher)
        self._order: list[int] = []
        if start is not None:
            self._restore(start)

    # ---- checkpoints --------------------------------------------------------------------
    def _latest_checkpoint(self) -> Path | None:
        found = sorted(self.out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])) if self.out.is_dir() else []
        return found[-1] if found else None

    def _restore(self, folder: Path) -> None:
        state = torch.load(folder / STATE_FILE, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if self.query_weights is not None:
            self.query_weights.data.copy_(state["query_weights"])
        saved = json.loads((folder / RANDOM_FILE).read_text())
        if saved["config"] != self._run_identity():
            raise LsrError(f"{folder} was trained with other settings ({saved['config']}); resume with the same ones or a new --out")
        self.step = saved["step"]
        self.rng.bit_generator.state = saved["numpy_rng"]
        self._order = saved["order"]

    def _run_identity(self) -> dict[str, Any]:
        """Settings a resumed run must share with the one it continues (the length may grow)."""
        return {k: v for k, v in asdict(self.config).items() if k not in ("steps", "checkpoint_every", "threads", "out")}

    def save(self, folder: Path, *, with_state: bool = True) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        if self.query_weights is not None:
            write_idf_json(folder / IDF_FILE, torch.relu(self.query_weights).detach().numpy(), self.vocab)
        if with_state:
            extra = {"query_weights": self.query_weights.detach().clone()} if self.query_weights is not None else {}
            torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                        "torch_rng": torch.get_rng_state(), **extra}, folder / STATE_FILE)
            (folder / RANDOM_FILE).write_text(json.dumps({"step": self.step, "numpy_rng": self.rng.bit_generator.state,
                                                          "order": self._order, "config": self._run_identity()}))
        return folder

    # ---- training -----------------------------------------------------------------------
    def _batch(self) -> list[int]:
        """The next pairs of a seeded shuffle, reshuffled each epoch; one pair per query text."""
        chosen: list[int] = []
        seen: set[str] = set()
        while len(chosen) < min(self.config.batch_size, len({p.query for p in self.pairs})):
            if not self._order:
                self._order = self.rng.permutation(len(self.pairs)).tolist()
            i = self._order.pop()
            if self.pairs[i].query not in seen:  # a query twice in a batch would count its positive as a negative
                seen.add(self.pairs[i].query)
                chosen.append(i)
        return chosen

    def _encode(self, texts: list[str], max_length: int, model: torch.nn.Module | None = None) -> torch.Tensor:
        tok = self.tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        return splade_vectors(model or self.model, tok["input_ids"], tok["attention_mask"])

    def train_step(self) -> dict[str, float]:
        cfg = self.config
        self.step += 1
        started = time.perf_counter()
        rows = self._batch()
        queries = [self.pairs[i].query for i in rows]
        docs = [self.pairs[i].positive for i in rows]
        hard = [self.negatives[i][int(self.rng.integers(len(self.negatives[i])))] if self.negatives[i] else None for i in rows]
        docs += [self.texts[d] for d in hard if d is not None]
        if self.query_weights is None:
            q = self._encode(queries, cfg.query_max_length)
        else:
            q = static_query_vectors(self.token_ids(queries), self.query_weights)
        with torch.set_grad_enabled(cfg.query_weights != "learned-only"):
            d = self._encode(docs, cfg.max_length)
        scores = q @ d.T  # (B, documents): column i is query i's positive
        target = torch.arange(len(rows))
        contrastive = torch.nn.functional.cross_entropy(scores, target)
        lq = ramp(cfg.flops_query, self.step, cfg.flops_warmup) if self.query_weights is None else 0.0
        ld = ramp(cfg.flops_document, self.step, cfg.flops_warmup)
        fq, fd = flops(q), flops(d, self.idf if cfg.flops_kind == "idf" else None, cfg.l0_mask)
        loss = contrastive + lq * fq + ld * fd
        distill = torch.zeros(())
        if cfg.distill != "none":
            distill = self._distillation(scores, queries, docs, hard)
            loss = loss + cfg.distill_weight * distill
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"step": self.step, "loss": loss.item(), "contrastive": contrastive.item(), "flops_query": fq.item(),
                "flops_document": fd.item(), "lambda_query": lq, "lambda_document": ld, "distill": distill.item(),
                "nnz_query": float((q > 0).sum(1).float().mean()), "nnz_document": float((d > 0).sum(1).float().mean()),
                "lr": self.scheduler.get_last_lr()[0], "seconds": time.perf_counter() - started}

    def teacher_scores(self, queries: list[str], docs: list[str], pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The teacher's scores on the student's scale, the (queries, documents) matrix or, given
        ``pairs`` (query rows, document columns), those entries: the start model's SPLADE dot
        products and a cross-encoder's logits as they are, a dense teacher's cosines /
        temperature (KL) or x scale (MarginMSE). A cross-encoder reads only the pairs asked for."""
        cfg = self.config
        if isinstance(self.teacher, CrossEncoderTeacher):
            if pairs is None:
                grid = torch.meshgrid(torch.arange(len(queries)), torch.arange(len(docs)), indexing="ij")
            rows, cols = pairs if pairs is not None else (grid[0].flatten(), grid[1].flatten())
            logits = self.teacher.score([queries[i] for i in rows.tolist()], [docs[j] for j in cols.tolist()])
            return logits if pairs is not None else logits.view(len(queries), len(docs))
        if self.start_model is not None:
            with torch.no_grad():
                full = self._encode(queries, cfg.query_max_length, self.start_model) @ self._encode(docs, cfg.max_length, self.start_model).T
        else:
            cosine = torch.from_numpy(self.teacher.encode_queries(queries)) @ torch.from_numpy(self.teacher.encode_documents(docs)).T
            full = cosine / cfg.teacher_temperature if cfg.distill == "kl" else cosine * cfg.teacher_scale
        return full if pairs is None else full[pairs]

    def _distillation(self, scores: torch.Tensor, queries: list[str], docs: list[str], hard: list[str | None]) -> torch.Tensor:
        if self.config.distill == "kl":
            teacher = self.teacher_scores(queries, docs)
            return torch.nn.functional.kl_div(torch.log_softmax(scores, 1), torch.log_softmax(teacher, 1), reduction="batchmean", log_target=True)
        b = len(queries)
        has = torch.tensor([h is not None for h in hard])
        neg_col = (b + torch.cumsum(has.long(), 0) - 1)[has]  # column of each query's hard negative
        rows = torch.arange(b)[has]
        student = scores[rows, rows] - scores[rows, neg_col]
        teacher = self.teacher_scores(queries, docs, (torch.cat([rows, rows]), torch.cat([rows, neg_col])))
        return torch.nn.functional.mse_loss(student, teacher[:len(rows)] - teacher[len(rows):])

    def train(self, show_progress_bar: bool = True) -> dict[str, Any]:
        """Run to ``config.steps`` (from where a resumed run stopped); returns a summary."""
        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "training.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        log_path = self.out / LOG_FILE
        if self.step == 0:
            log_path.unlink(missing_ok=True)
        else:  # a resumed run: drop log lines past the checkpoint it continues from
            lines = log_path.read_text().splitlines() if log_path.is_file() else []
            log_path.write_text("".join(line + "\n" for line in lines if json.loads(line)["step"] <= self.step))
        started = time.perf_counter()
        with log_path.open("a") as log, tqdm(total=cfg.steps, initial=self.step, desc="training", disable=not show_progress_bar) as bar:
            while self.step < cfg.steps:
                record = self.train_step()
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", nnz_d=f"{record['nnz_document']:.0f}")
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self.save(self.out / f"checkpoint-{self.step}")
        self.save(self.out / f"checkpoint-{self.step}")
        self.save(self.out, with_state=False)
        plot_log(log_path, self.out / "train_plot.png")
        return {"out": str(self.out), "steps": self.step, "seconds": round(time.perf_counter() - started, 1), "pairs": len(self.pairs)}


def plot_log(log_path: Path, out: Path) -> None:
    """Loss parts and non-zeros per query / document against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines()]
    steps = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in ("loss", "contrastive", "distill"):
        a.plot(steps, [r[key] for r in rows], label=key)
    a.set_xlabel("step")
    a.legend()
    for key in ("nnz_query", "nnz_document"):
        b.plot(steps, [r[key] for r in rows], label=key)
    b.set_xlabel("step")
    b.set_ylabel("non-zeros per text")
    b.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    if any(math.isnan(r["loss"]) for r in rows):
        raise LsrError(f"training diverged (loss NaN); see {log_path}")
