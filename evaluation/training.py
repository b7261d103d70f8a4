#!/usr/bin/env python
"""`lsr train` results (issue 16): FLOPS-regularized fine-tuning measured on SciFact, in-domain
fine-tuning on a query split, and the wall clock of the default recipe.

Every run is the CLI (``python -m lsr.cli train ...``, timed wall clock) writing its model under
``$LSR_TRAIN_DIR`` (default /work/scratch; never the repository), then scored through
:func:`lsr.evaluation.harness.evaluate_system` against the start model (splade-tiny) on the same
queries. No run sees the queries or qrels it is reported on:

- ``flops-*``: SciFact's corpus as title -> text pairs (no SciFact query, no qrels), hard
  negatives from our BM25 index of it; reported on SciFact's test queries, exact and approx
  (default knobs) search, non-zeros per document and query;
- ``split-*``: the first half of a collection's queries (:func:`lsr.training.data.query_half`),
  reported on the second half; ``default-cranfield`` is one of them, the default recipe (no
  flag but the data), whose wall clock is the third target; ``noflops-*`` are the same split
  runs without FLOPS (the in-domain target asks for relevance, not sparsity); ``dense-*`` add KL
  distillation from the bundled dense model (all-MiniLM-L6-v2, stronger than splade-tiny on
  Cranfield and Medline), ``dense-lr1e-4-*`` the same at twice the learning rate. Each recipe's
  query-split target is counted on its own;
- ``zeroshot-medline``: the ``dense-lr1e-4`` recipe on all of Medline's judged queries (the
  offline collection nearest SciFact's biomedical claims), reported zero-shot on SciFact.

Piecewise, so that no locked job runs long: ``--until STEP`` trains the given runs up to STEP
(an existing run resumes; each chunk's wall clock is kept in ``<run>/wall_clock.json``); a run
is evaluated once it has all its steps. Rows of an earlier ``training.json`` are kept unless re-run.

    flock -x /work/bench.lock python evaluation/training.py [--runs NAME ...] [--until STEP]

Writes ``training.json``, ``training.md`` and ``training.png`` under evaluation/results/encoders/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402

from lsr.data import load_collection  # noqa: E402
from lsr.encoders import SpladeEncoder  # noqa: E402
from lsr.evaluation.common import git_commit  # noqa: E402
from lsr.evaluation.harness import SystemSpec, evaluate_system  # noqa: E402
from lsr.training.config import TrainConfig  # noqa: E402
from lsr.training.data import query_half  # noqa: E402

OUT = PROJECT_ROOT / "evaluation" / "results" / "encoders"
TRAIN_DIR = Path(os.environ.get("LSR_TRAIN_DIR", "/work/scratch"))
START = TrainConfig(out="").model
K = 100
SPLIT = ["--steps", "200", "--lr", "5e-5", "--warmup-steps", "20"]
SPLIT_FAST = ["--steps", "200", "--lr", "1e-4", "--warmup-steps", "20"]
NO_FLOPS = ["--flops-query", "0", "--flops-document", "0"]
SELF_DISTILL = ["--distill", "kl", "--teacher", "start", "--flops-query", "0", "--warmup-steps", "20", "--flops-warmup", "50"]


@dataclass(frozen=True)
class Run:
    """One training run: its data and flags (the CLI's), and the queries it is reported on."""

    name: str
    data: list[str]
    flags: list[str] = field(default_factory=list)
    dataset: str = "scifact"
    half: str | None = None  # report only this half of the dataset's queries
    recipe: str = "split"  # query-split runs of one recipe count towards one target line

    @property
    def steps(self) -> int:
        return int(self.flags[self.flags.index("--steps") + 1]) if "--steps" in self.flags else TrainConfig(out="").steps

    @property
    def out(self) -> Path:
        return TRAIN_DIR / f"train-{self.name}"

    def command(self, steps: int | None = None) -> list[str]:
        flags = [f for i, f in enumerate(self.flags) if "--steps" not in (f, self.flags[i - 1] if i else None)]
        return ["lsr", "train", *self.data, "--out", str(self.out), *flags, *(["--steps", str(steps)] if steps else [])]


RUNS = {r.name: r for r in [
    Run("default-cranfield", ["--qrels", "cranfield", "--query-half", "first"], dataset="cranfield", half="second"),
    Run("split-vaswani", ["--qrels", "vaswani", "--query-half", "first"], SPLIT, dataset="vaswani", half="second"),
    Run("split-medline", ["--qrels", "medline", "--query-half", "first"], SPLIT, dataset="medline", half="second"),
    Run("split-cacm", ["--qrels", "cacm", "--query-half", "first"], SPLIT, dataset="cacm", half="second"),
    *(Run(f"noflops-{c}", ["--qrels", c, "--query-half", "first"], [*SPLIT, *NO_FLOPS],
          dataset=c, half="second", recipe="noflops") for c in ("cranfield", "vaswani", "medline", "cacm")),
    *(Run(f"dense-{c}", ["--qrels", c, "--query-half", "first"], [*SPLIT, *NO_FLOPS, "--distill", "kl"],
          dataset=c, half="second", recipe="dense-kl") for c in ("cranfield", "vaswani", "medline", "cacm")),
    *(Run(f"dense-lr1e-4-{c}", ["--qrels", c, "--query-half", "first"], [*SPLIT_FAST, *NO_FLOPS, "--distill", "kl"],
          dataset=c, half="second", recipe="dense-kl-lr1e-4") for c in ("cranfield", "vaswani", "medline", "cacm")),
    *(Run(f"flops-d{w}", ["--titles", "scifact"], [*SELF_DISTILL, "--flops-document", w, "--steps", "200"], recipe="flops")
      for w in ("0.05", "0.01")),
    Run("zeroshot-medline", ["--qrels", "medline"], [*SPLIT_FAST, *NO_FLOPS, "--distill", "kl"], recipe="zero-shot"),
]}


def train(run: Run, until: int | None) -> None:
    """Train ``run`` (resuming) to ``until`` or its last step; append the chunk's wall clock."""
    done = trained_steps(run)
    target = min(until or run.steps, run.steps)
    if done >= target:
        return
    cmd = [sys.executable, "-m", "lsr.cli", *run.command(target)[1:]]
    print(" ".join(cmd), file=sys.stderr)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=PROJECT_ROOT)
    chunks = wall_clock(run) + [{"from_step": done, "to_step": target, "seconds": round(time.perf_counter() - t0, 1)}]
    (run.out / "wall_clock.json").write_text(json.dumps(chunks, indent=2) + "\n")


def trained_steps(run: Run) -> int:
    steps = [int(p.name.split("-")[1]) for p in run.out.glob("checkpoint-*")]
    return max(steps, default=0)


def wall_clock(run: Run) -> list[dict[str, Any]]:
    path = run.out / "wall_clock.json"
    return json.loads(path.read_text()) if path.is_file() else []


def evaluate(name: str, model: str, run: Run, modes: list[str]) -> list[dict[str, Any]]:
    """``model`` on ``run``'s evaluation queries, one row per search mode (index built once)."""
    collection = load_collection(run.dataset, judged_only=run.dataset == "cacm")
    if run.half:
        collection = dataclasses.replace(collection, queries=[q for q in collection.queries if query_half(q.id, run.half)])
    cache = TRAIN_DIR / "train-eval" / (name if model == START else run.name)
    queries = SpladeEncoder(model).encode_queries([q.text for q in collection.queries])
    rows = []
    for mode in modes:
        spec = SystemSpec(name=name, kind="lsr", model=model, mode=mode, params={"approx": "approx" in modes})
        report = evaluate_system(spec, collection, k=K, cache_dir=cache, runs_dir=cache / "runs", rebuild=model != START and mode == modes[0],
                                 log=lambda m: print(m, file=sys.stderr))
        eff, index = report["efficiency"], report["system"]["index"]
        rows.append({"system": name, "model": model, "dataset": run.dataset, "half": run.half, "queries": len(collection.queries),
                     "mode": mode, "nDCG@10": report["metrics"]["nDCG@10"], f"R@{K}": report["metrics"].get(f"R@{K}"),
                     "doc_nnz_mean": index["num_postings"] / index["num_docs"], "query_nnz_mean": float(np.diff(queries.indptr).mean()),
                     "search_ms_p50": eff.get("latency_ms_p50"), "search_ms_p99": eff.get("latency_ms_p99"),
                     "recall_vs_exact": eff.get("recall_vs_exact"), "recall_vs_exact_k": eff.get("recall_vs_exact_k")})
    return rows


def run_summary(run: Run) -> dict[str, Any]:
    log = [json.loads(line) for line in (run.out / "train_log.jsonl").read_text().splitlines()]
    chunks = wall_clock(run)
    seconds = sum(c["seconds"] for c in chunks)
    return {"run": run.name, "command": " ".join(run.command()), "steps": run.steps, "wall_clock_seconds": seconds, "chunks": chunks,
            "steps_per_second": run.steps / seconds if seconds else None, "step_seconds_mean": float(np.mean([r["seconds"] for r in log])),
            "final_nnz_document": float(np.mean([r["nnz_document"] for r in log[-20:]])),
            "final_nnz_query": float(np.mean([r["nnz_query"] for r in log[-20:]]))}


def markdown(rows: list[dict[str, Any]], runs: list[dict[str, Any]], command: str) -> str:
    by = {(r["system"], r["mode"]): r for r in rows if r["half"] is None and r["dataset"] == "scifact"}
    lines = ["# `lsr train`: FLOPS-regularized and in-domain fine-tuning of splade-tiny", "",
             f"Generated by `{command}` (git `{git_commit() or '?'}`). Do not edit by hand. Models are written under "
             f"`{TRAIN_DIR}/train-<run>/` (not committed). Search latency: one thread, single pre-encoded queries, k={K}, median (p99); "
             "approx at its default knobs, recall@10 against exact search of the same index.", ""]
    flops = sorted({s for s, _ in by if s != START and RUNS[s].recipe == "flops"})
    if flops:
        lines += ["## FLOPS-regularized fine-tuning, reported on SciFact (test queries, never trained on)", "",
                  "Training data: SciFact's corpus as title -> text pairs (5,183 documents; no query, no qrels), hard negatives from "
                  "our BM25 index of it, self-distillation (KL over the batch's scores) from the frozen start model, FLOPS on documents only.", "",
                  "| model | nDCG@10 | docs nnz | vs start | query nnz | exact ms p50 (p99) | approx ms p50 (p99) | approx recall@10 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        base = by[(START, "exact")]
        for name in [START, *flops]:
            exact, approx = by[(name, "exact")], by.get((name, "approx"))
            lines.append(f"| {name} | {exact['nDCG@10']:.4f} ({exact['nDCG@10'] - base['nDCG@10']:+.4f}) | "
                         f"{exact['doc_nnz_mean']:.0f} | {exact['doc_nnz_mean'] / base['doc_nnz_mean'] - 1:+.1%} | {exact['query_nnz_mean']:.1f} | "
                         f"{exact['search_ms_p50']:.3f} ({exact['search_ms_p99']:.3f}) | "
                         + (f"{approx['search_ms_p50']:.3f} ({approx['search_ms_p99']:.3f}) | {approx['recall_vs_exact']:.3f} |" if approx else " | |"))
    zero_shot = sorted({s for s, _ in by if s != START and RUNS[s].recipe == "zero-shot"})
    if zero_shot:
        lines += ["", "## Zero-shot on SciFact (trained on another collection's queries and qrels, none of SciFact's)", "",
                  "| model | trained on | nDCG@10 | vs splade-tiny | docs nnz | query nnz | exact ms p50 (p99) |", "|---|---|---:|---:|---:|---:|---:|"]
        base = by[(START, "exact")]
        for name in zero_shot:
            r = by[(name, "exact")]
            lines.append(f"| {name} | {RUNS[name].data[1]} (all its judged queries) | {r['nDCG@10']:.4f} | {r['nDCG@10'] - base['nDCG@10']:+.4f} | "
                         f"{r['doc_nnz_mean']:.0f} | {r['query_nnz_mean']:.1f} | {r['search_ms_p50']:.3f} ({r['search_ms_p99']:.3f}) |")
    split = [r for r in rows if r["half"] is not None]
    if split:
        lines += ["", "## In-domain fine-tuning on a query split (trained on the first half of the queries, reported on the second)", "",
                  "| collection | run | held-out queries | splade-tiny nDCG@10 | fine-tuned nDCG@10 | gain |", "|---|---|---:|---:|---:|---:|"]
        for r in (r for r in split if r["system"] != START):
            b = next(x for x in split if x["system"] == START and x["dataset"] == r["dataset"] and x["half"] == r["half"])
            lines.append(f"| {r['dataset']} | {r['system']} | {r['queries']} | {b['nDCG@10']:.4f} | {r['nDCG@10']:.4f} | {r['nDCG@10'] - b['nDCG@10']:+.4f} |")
    if runs:
        lines += ["", "## Training runs (wall clock of `lsr train`, 2-core CPU, under `flock -x /work/bench.lock`)", "",
                  "| run | command | steps | wall clock (chunks) | steps/s | s per step (in the step) | nnz doc / query (last 20 steps, 128 / 32 tokens) |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for s in runs:
            parts = " + ".join(f"{c['seconds'] / 60:.1f}" for c in s["chunks"])
            lines.append(f"| {s['run']} | `{s['command']}` | {s['steps']} | {s['wall_clock_seconds'] / 60:.1f} min ({parts}) | "
                         f"{s['steps_per_second'] or 0:.3f} | {s['step_seconds_mean']:.2f} | {s['final_nnz_document']:.0f} / {s['final_nnz_query']:.1f} |")
    lines += ["", "## Targets", ""] + targets(by, split, runs)
    return "\n".join(lines) + "\n"


def targets(by: dict[tuple[str, str], dict[str, Any]], split: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[str]:
    """One line per target of the issue: met or missed, and by how much."""
    out = []
    if (START, "exact") in by:
        base = by[(START, "exact")]
        for name in sorted({s for s, _ in by if s != START and RUNS[s].recipe == "flops"}):
            r = by[(name, "exact")]
            cut, loss = 1 - r["doc_nnz_mean"] / base["doc_nnz_mean"], base["nDCG@10"] - r["nDCG@10"]
            out.append(f"- FLOPS ({name}): {cut:.0%} fewer non-zeros per document (target >= 30%), nDCG@10 {-loss:+.4f} (target: a loss <= 0.01): "
                       + ("met." if cut >= 0.3 and loss <= 0.01 else "missed."))
    recipes: dict[str, dict[str, float]] = {}
    for r in (r for r in split if r["system"] != START):
        base = next(x["nDCG@10"] for x in split if x["system"] == START and x["dataset"] == r["dataset"])
        recipes.setdefault(RUNS[r["system"]].recipe, {})[r["dataset"]] = r["nDCG@10"] - base
    for recipe, gains in recipes.items():
        good = [d for d, g in gains.items() if g >= 0.02]
        out.append(f"- Query split ({recipe} runs): >= +0.02 nDCG@10 on {len(good)} of {len(gains)} collections "
                   f"({', '.join(good) or 'none'}; target: 2): " + ("met." if len(good) >= 2 else "missed."))
    for s in (s for s in runs if s["run"].startswith("default")):
        out.append(f"- Default recipe ({s['steps']} steps): {s['wall_clock_seconds'] / 60:.1f} min wall clock (target < 60): "
                   + ("met." if s["wall_clock_seconds"] < 3600 else "missed."))
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """SciFact nDCG@10 against non-zeros per document, the start model and each FLOPS run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r["dataset"] == "scifact" and r["half"] is None and r["mode"] == "exact"]
    if not points:
        return
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for r in points:
        ax.scatter(r["doc_nnz_mean"], r["nDCG@10"], s=18)
        ax.annotate(r["system"], (r["doc_nnz_mean"], r["nDCG@10"]), fontsize=7)
    ax.set_xlabel("non-zeros per document")
    ax.set_ylabel("SciFact nDCG@10")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--until", type=int, help="train only up to this step (resume later); evaluate runs that are complete")
    p.add_argument("--train-only", action="store_true", help="train, evaluate later (keeps each locked job short)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python evaluation/training.py " + " ".join(sys.argv[1:])
    earlier = json.loads((out / "training.json").read_text()) if (out / "training.json").is_file() else {}
    rows, runs = earlier.get("rows", []), earlier.get("runs", [])

    def save() -> None:
        (out / "training.json").write_text(json.dumps({"command": command, "git_commit": git_commit(), "rows": rows, "runs": runs}, indent=2) + "\n")
        (out / "training.md").write_text(markdown(rows, runs, command))
        plot(rows, out / "training.png")

    for name in args.runs:
        run = RUNS[name]
        train(run, args.until)
        if args.train_only or trained_steps(run) < run.steps:
            continue
        modes = ["exact", "approx"] if run.half is None else ["exact"]
        if not any(r["system"] == START and r["dataset"] == run.dataset and r["half"] == run.half for r in rows):
            rows += evaluate(START, START, run, modes)
        rows = [r for r in rows if r["system"] != name] + evaluate(name, str(run.out), run, modes)
        runs = [s for s in runs if s["run"] != name] + [run_summary(run)]
        save()
    print((out / "training.md").read_text() if (out / "training.md").is_file() else "no complete run yet")


if __name__ == "__main__":
    main()
