#!/usr/bin/env python
"""Default weights for fusing BM25, splade-tiny and dense (all-MiniLM-L6-v2), chosen without the
reported queries: leave one collection out.

For every offline collection, each system is run once through the evaluation harness (BM25 built
by the harness; splade-tiny from the cached document encodings with a MiniLM dense part, cached
document encodings too). Fused runs are then computed from those runs (each system's top
``DEPTH``) for a grid of weights and both fusions (weighted RRF, weighted min-max linear). For
each collection, the setting with the best mean nDCG@10 over the *other five* is reported on it
(the honest figure); the shipped default (:data:`lsr.retrieval.hybrid.DEFAULT_WEIGHTS`) is the
setting best on average over all six, and is finally run live through the harness (kind
``fusion``) on every collection, with its latency.

    flock -s /work/bench.lock python evaluation/fusion.py [--systems bm25 splade dense] [--datasets adi ...]

Writes ``fusion-<systems>.json`` and ``.md`` under evaluation/results/encoders/.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "evaluation"))

import numpy as np  # noqa: E402

from encoders import build_indexes  # noqa: E402  (evaluation/encoders.py: splade-tiny indexes from the cached encodings)
from lsr.bench.data import FULL_COLLECTIONS  # noqa: E402
from lsr.data import load_collection, read_run  # noqa: E402
from lsr.encoders import SpladeEncoder  # noqa: E402
from lsr.evaluation.common import git_commit, safe_name  # noqa: E402
from lsr.evaluation.harness import SystemSpec, evaluate_system  # noqa: E402
from lsr.evaluation.metrics import evaluate  # noqa: E402
from lsr.index import SparseIndex  # noqa: E402
from lsr.index.dense import add_dense  # noqa: E402
from lsr.pipeline import encode_dense_corpus  # noqa: E402
from lsr.retrieval.fusion import fuse_ids  # noqa: E402
from lsr.util import cache_dir  # noqa: E402

OUT = PROJECT_ROOT / "evaluation" / "results" / "encoders"
DENSE = "all-MiniLM-L6-v2"
ALL_SYSTEMS = ("bm25", "splade", "dense")
DEPTH = 100
STEP = 0.1


def with_dense(name: str, encoder: SpladeEncoder) -> Path:
    """The splade-tiny index of ``name`` plus a flat MiniLM dense part (cached)."""
    path = cache_dir("encoders") / safe_name(name) / "d-exp-dense"
    if not (path / "manifest.json").is_file():
        index = SparseIndex.load(build_indexes(name, encoder)["d-exp"], mmap=False)
        collection = load_collection(name)
        ids, vectors, settings = encode_dense_corpus(collection.corpus, DENSE, show_progress_bar=False,
                                                     cache=cache_dir("vectors") / safe_name(DENSE) / f"{safe_name(collection.name)}.dense.npz")
        add_dense(index, vectors, ids, model=DENSE, encoder_settings=settings)
        index.save(path)
    return path


def specs(name: str, encoder: SpladeEncoder, systems: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    index = str(with_dense(name, encoder) if "dense" in systems else build_indexes(name, encoder)["d-exp"])
    every = {"bm25": {"name": "bm25", "kind": "lsr", "model": "bm25"},
             "splade": {"name": "splade", "kind": "index", "index": index},
             "dense": {"name": "dense", "kind": "index", "index": index, "mode": "dense"}}
    return {s: every[s] for s in systems}


def grid(n: int) -> list[tuple[float, ...]]:
    """Weights on the simplex, step STEP, with at least two systems weighted."""
    steps = int(round(1 / STEP))
    return [tuple(round(a * STEP, 3) for a in w) for w in itertools.product(range(steps + 1), repeat=n)
            if sum(w) == steps and sum(a > 0 for a in w) >= 2]


def ndcg(run: dict[str, dict[str, float]], collection) -> float:
    return evaluate(run, collection.qrels, ["nDCG@10"], query_ids=[q.id for q in collection.queries],
                    relevance_level=collection.relevance_level, ignore_identical_ids=collection.ignore_identical_ids).scores["nDCG@10"]


def fused_run(runs: dict[str, dict], systems: tuple[str, ...], weights: tuple[float, ...], fusion: str) -> dict[str, dict[str, float]]:
    out = {}
    for q in set().union(*(runs[s] for s in systems)):
        lists = []
        for s in systems:
            hits = sorted(runs[s].get(q, {}).items(), key=lambda kv: -kv[1])[:DEPTH]
            lists.append(([d for d, _ in hits], [v for _, v in hits]))
        kept = [(lst, w) for lst, w in zip(lists, weights) if w > 0]
        ids, scores = fuse_ids([lst for lst, _ in kept], 1000, fusion=fusion, weights=[w for _, w in kept])
        out[q] = dict(zip(ids, scores))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", nargs="+", choices=ALL_SYSTEMS, default=list(ALL_SYSTEMS))
    p.add_argument("--datasets", nargs="+", default=list(FULL_COLLECTIONS))
    args = p.parse_args()
    systems, names = tuple(args.systems), list(args.datasets)
    encoder = SpladeEncoder("splade-tiny")
    runs_dir = cache_dir("encoders") / "runs-fusion"
    singles: dict[str, dict[str, Any]] = {}
    table: dict[str, dict[str, float]] = {}  # "fusion weights" -> collection -> nDCG@10
    collections = {}
    for name in names:
        collection = collections[name] = load_collection(name, judged_only=name == "cacm")
        runs = {}
        for system, cfg in specs(name, encoder, systems).items():
            report = evaluate_system(SystemSpec.from_config(cfg), collection, k=1000, cache_dir=cache_dir("encoders") / "bm25",
                                     runs_dir=runs_dir, efficiency=False, log=lambda m: print(m, file=sys.stderr))
            runs[system] = read_run(runs_dir / safe_name(collection.name) / f"{safe_name(cfg['name'])}.trec")
            singles.setdefault(system, {})[name] = report["metrics"]["nDCG@10"]
        for fusion in ("rrf", "linear"):
            for weights in grid(len(systems)):
                table.setdefault(f"{fusion} {weights}", {})[name] = ndcg(fused_run(runs, systems, weights, fusion), collection)
    loco = {}
    for held in names:
        others = [n for n in names if n != held]
        best = max(table, key=lambda key: np.mean([table[key][n] for n in others]))
        loco[held] = {"setting": best, "nDCG@10": table[best][held]}
    default = max(table, key=lambda key: np.mean([table[key][n] for n in names]))
    equal = f"rrf {tuple(round(1 / len(systems), 1) for _ in systems) if len(systems) == 2 else (0.3, 0.3, 0.4)}"  # (nearest to) equal weights
    fusion, weights = default.split(" ", 1)
    weights = tuple(float(w) for w in weights.strip("()").split(","))
    live = {}
    for name in names:
        cfgs = specs(name, encoder, systems)
        spec = SystemSpec(name=f"fusion-default-{'-'.join(systems)}", kind="fusion", knobs={"fusion": fusion, "depth": DEPTH},
                          systems=[{**cfgs[s], "weight": w} for s, w in zip(systems, weights) if w > 0])
        report = evaluate_system(spec, collections[name], k=1000, cache_dir=cache_dir("encoders") / "bm25", runs_dir=runs_dir,
                                 log=lambda m: print(m, file=sys.stderr))
        live[name] = {"nDCG@10": report["metrics"]["nDCG@10"], "encode_ms_per_query": report["efficiency"]["encode_ms_per_query"],
                      "search_ms_p50": report["efficiency"].get("latency_ms_p50")}
    command = "python evaluation/fusion.py " + " ".join(sys.argv[1:])
    result = {"command": command, "git_commit": git_commit(), "depth": DEPTH, "step": STEP, "systems": systems, "singles": singles,
              "grid": table, "leave_one_out": loco, "default": default, "live_default": live}
    OUT.mkdir(parents=True, exist_ok=True)
    stem = OUT / f"fusion-{'-'.join(systems)}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result, names, equal))
    print(stem.with_suffix(".md").read_text())


def markdown(r: dict[str, Any], names: list[str], equal: str) -> str:
    grid_ = r["grid"]
    lines = [f"# Fusion of {', '.join(r['systems'])}: weights without the reported queries", "",
             f"Generated by `{r['command']}` (git `{r['git_commit'] or '?'}`). Do not edit by hand. Weights are "
             f"({', '.join(r['systems'])}) (splade = splade-tiny, dense = {DENSE}), grid step {r['step']}; each system's top {r['depth']} "
             "fused; nDCG@10.", "",
             "| system | " + " | ".join(names) + " | mean |", "|---|" + "---:|" * (len(names) + 1)]
    for s, vals in r["singles"].items():
        lines.append(f"| {s} alone | " + " | ".join(f"{vals[n]:.4f}" for n in names) + f" | {np.mean([vals[n] for n in names]):.4f} |")
    pairs = ["rrf (0.5, 0.5, 0.0)", "rrf (0.0, 0.5, 0.5)", "rrf (0.5, 0.0, 0.5)"] if len(r["systems"]) == 3 else []
    for key in dict.fromkeys([*pairs, equal, r["default"]]):
        lines.append(f"| {key} | " + " | ".join(f"{grid_[key][n]:.4f}" for n in names) + f" | {np.mean([grid_[key][n] for n in names]):.4f} |")
    loco = r["leave_one_out"]
    lines.append("| **leave-one-collection-out** (weights fit on the other five) | " + " | ".join(f"**{loco[n]['nDCG@10']:.4f}**" for n in names)
                 + f" | **{np.mean([loco[n]['nDCG@10'] for n in names]):.4f}** |")
    lines += ["", "Setting chosen per held-out collection: " + "; ".join(f"{n}: {loco[n]['setting']}" for n in names) + ".", "",
              f"Shipped default (best mean over all six; its leave-one-out figures above are the unbiased estimate): **{r['default']}**.", "",
              "## The default, run live through the harness (`lsr evaluate --fuse ...`)", "",
              "| collection | nDCG@10 | encode ms/query (all systems) | search p50 ms |", "|---|---:|---:|---:|"]
    for n in names:
        v = r["live_default"][n]
        lines.append(f"| {n} | {v['nDCG@10']:.4f} | {v['encode_ms_per_query']:.2f} | {v['search_ms_p50']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
