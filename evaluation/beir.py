#!/usr/bin/env python
"""Run the BEIR-layout evaluation suite described by a YAML config (default: configs/beir.yaml).

For every dataset x system of the config: build (or reuse) the index, search, save the TREC
run with its description, score it with trec_eval semantics, and measure efficiency. Writes
``results.json`` (every row with its system description, run path and sha256), ``results.md``
(effectiveness, reference checks, efficiency) and ``recall_latency.png`` to the output folder.

Rows of an earlier results.json are kept unless re-run (``--fresh`` drops them), so the suite
can be run piecewise: ``--datasets scifact --systems bm25``.

Relative paths (the config, its output/runs/cache folders, datasets given as paths) are relative
to the project root, whatever the working directory, which the suite never changes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

import yaml  # noqa: E402

from lsr.data import collection_name, load_collection  # noqa: E402
from lsr.errors import LsrError  # noqa: E402
from lsr.evaluation import report as rep  # noqa: E402
from lsr.evaluation.harness import SystemSpec, evaluate_system, git_commit  # noqa: E402
from lsr.evaluation.metrics import DEFAULT_METRICS, parse_metric  # noqa: E402
from lsr.util import machine_threads  # noqa: E402

DATASET_KEYS = {"name", "split", "ignore_identical_ids", "relevance_level", "published", "judged_only"}


def from_root(path: str | os.PathLike) -> Path:
    """``path`` resolved against the project root (absolute paths unchanged), not the working directory."""
    return PROJECT_ROOT / Path(path).expanduser()


def dataset_ref(name: str) -> str:
    """A dataset name of the config as :func:`load_collection` takes it: a relative path that exists
    under the project root becomes absolute; anything else (a collection name, an ir_datasets id) is kept."""
    p = from_root(name)
    return str(p) if p.exists() else name


def load_config(path: Path) -> dict[str, Any]:
    cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for key in ("datasets", "systems"):
        if not cfg.get(key):
            raise ValueError(f"{path}: '{key}' must list at least one entry")
    for d in cfg["datasets"]:
        extra = set(d) - DATASET_KEYS
        if extra or "name" not in d:
            raise ValueError(f"{path}: dataset entry {d!r}: needs 'name'; unknown keys {sorted(extra)}")
    names = [s.get("name") for s in cfg["systems"]]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: system names must be unique, got {names}")
    for s in cfg["systems"]:
        SystemSpec.from_config({k: v for k, v in s.items() if k != "optional"})
    for m in cfg.get("metrics", DEFAULT_METRICS):
        parse_metric(m)
    return cfg


def environment() -> dict[str, Any]:
    import numba

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": machine_threads(),
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "git_commit": git_commit(),
    }
    try:
        import ir_measures

        env["ir_measures"] = ir_measures.__version__
    except (ImportError, AttributeError):
        pass
    from lsr.evaluation import pyserini_ref

    ok, why = pyserini_ref.status()
    env["pyserini"] = pyserini_ref.versions() if ok else why
    return env


def run_checks(cfg: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_key = {(r["dataset"]["name"], r["system"]["name"]): r for r in rows}
    published = {collection_name(dataset_ref(d["name"])): d.get("published", {}) for d in cfg["datasets"]}
    out = []
    for check in cfg.get("checks", []):
        datasets = list(published) if check["dataset"] == "*" else [collection_name(dataset_ref(check["dataset"]))]
        for ds in datasets:
            row = by_key.get((ds, check["system"]))
            metric = check["metric"]
            if row is None or metric not in row["metrics"]:
                continue
            if check["against"] == "published":
                ref = published.get(ds, {}).get(check["system"], {}).get(metric)
                against = "published"
            else:
                other = by_key.get((ds, check["against"]))
                ref = other["metrics"].get(metric) if other else None
                against = check["against"]
            if ref is None:
                continue
            diff = abs(row["metrics"][metric] - ref)
            item = {"dataset": ds, "system": check["system"], "against": against, "metric": metric,
                    "value": row["metrics"][metric], "reference": ref, "diff": diff,
                    "tolerance": check["tolerance"], "pass": diff <= check["tolerance"] + 1e-12}
            if not any(o["dataset"] == ds and o["system"] == item["system"] and o["against"] == against for o in out):
                out.append(item)
    return out


def _dense_description(dense: dict[str, Any] | None) -> str:
    if not dense:
        return ""
    return (f"dense part `{dense.get('model')}` (faiss {dense.get('kind')}, inner product, {dense.get('dim')} dims, "
            f"{dense.get('clusters')} k-means clusters for selective search); ")


def markdown(cfg: dict[str, Any], rows: list[dict[str, Any]], checks: list[dict[str, Any]], skipped: list[dict[str, Any]],
             env: dict[str, Any], config_path: str, plot: Path | None) -> str:
    metrics = cfg.get("metrics", list(DEFAULT_METRICS))
    lines = [
        "# BEIR-layout evaluation: offline collections",
        "",
        f"Generated by `python evaluation/beir.py --config {config_path}` (git `{(env.get('git_commit') or '?')[:12]}`), "
        f"k = {cfg.get('k', 1000)} hits per query. Do not edit by hand: re-run the command.",
        "",
        "Metrics have trec_eval semantics (computed with ir-measures/pytrec_eval): nDCG@10 = `ndcg_cut.10`, "
        "RR@10 = `recip_rank` on rankings cut at 10 (`-M 10`), R@k = `recall.k`, Judged@10 = share of the top 10 "
        "that has a judgment. Judged queries only (a judged query without results scores 0, as `trec_eval -c`); "
        "relevance <= 0 is non-relevant.",
        "",
        "## Effectiveness",
        "",
        rep.quality_table(rows, metrics),
        "",
    ]
    if checks:
        lines += ["## Reference checks", "", "| dataset | system | against | metric | value | reference | abs diff | tolerance | ok |",
                  "|---|---|---|---|---:|---:|---:|---:|---|"]
        for c in checks:
            lines.append(f"| {c['dataset']} | {c['system']} | {c['against']} | {c['metric']} | {c['value']:.4f} | "
                         f"{c['reference']:.4f} | {c['diff']:.4f} | {c['tolerance']} | {'yes' if c['pass'] else '**no**'} |")
        lines.append("")
    lines += [
        "## Efficiency",
        "",
        f"Machine: {env.get('cpus')} cores ({env.get('platform')}), shared with other jobs while measured: treat "
        "timings as indicative; effectiveness figures do not depend on the machine. Latency: single queries, one "
        "thread, sequentially (pre-encoded for lsr; for pyserini it includes analysis and the JNI transfer of k hits). "
        "QPS: all queries as one batch over `threads`. encode ms/q: query encoding (batch) per query. "
        "Build s: corpus encoding + indexing. recall vs exact: overlap of the top 10 with exact search (1 for exact modes). "
        "Dense and hybrid rows: latency covers the sparse search, the dense search and the fusion (queries pre-encoded by "
        "both models; encode ms/q is both encoders); dense scored: mean share of the collection's dense vectors scored per query.",
        "",
        rep.efficiency_table(rows),
        "",
    ]
    if plot is not None:
        lines += [f"![recall and quality against latency]({plot.name})", ""]
    lines += ["## Systems", ""]
    seen = set()
    for r in rows:
        s = r["system"]
        if s["name"] in seen:
            continue
        seen.add(s["name"])
        if s.get("engine") == "lsr":
            enc = (s.get("index") or {}).get("encoder") or {}
            settings = (s.get("index") or {}).get("settings") or {}
            detail = ", ".join(f"{k}={v}" for k, v in enc.items() if k in ("k1", "b", "norms", "max_length", "query_max_length", "top_k"))
            analyzer = enc.get("analyzer")
            lines.append(f"- **{s['name']}**: our engine, model `{s.get('model')}`"
                         + (f" ({detail})" if detail else "")
                         + (f", analyzer {analyzer.get('name')} (stopwords {analyzer.get('stopwords')}, stemmer {analyzer.get('stemmer')})" if analyzer else "")
                         + f"; index {settings.get('quantization')} impacts, block size {settings.get('block_size')}; "
                         + _dense_description((s.get("index") or {}).get("dense"))
                         + f"mode {s.get('mode')} ({s.get('search')})"
                         + (f", knobs {s['knobs']}." if s.get("knobs") else "."))
        else:
            versions = ", ".join(f"{k} {v}" for k, v in (s.get("versions") or {}).items())
            build = (s.get("index") or {}).get("build") or []
            shown = " ".join(build[build.index("-collection"):]) if "-collection" in build else " ".join(build)
            lines.append(f"- **{s['name']}**: {s.get('engine')} ({versions}), BM25 k1={s['params'].get('k1')} "
                         f"b={s['params'].get('b')}, {s.get('analyzer')}; {s.get('query_generator')}; index built by "
                         f"Anserini's IndexCollection `{shown}` from the same corpus.jsonl.")
    lines += ["", "Every row's run is `runs/beir/<dataset>/<system>.trec` with its description in `<run>.json`; "
              "results.json holds the same description, the run's sha256, per-row efficiency and evaluation counts.", ""]
    if skipped:
        lines += ["## Not run", ""] + [f"- {s['dataset']} / {s['system']}: {s['reason']}" for s in skipped] + [""]
    notes = [(r["dataset"]["name"], r["system"]["name"], n) for r in rows for n in r.get("notes", [])]
    if notes:
        lines += ["## Notes", ""] + [f"- {d} / {s}: {n}" for d, s, n in notes] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/beir.yaml")
    ap.add_argument("--datasets", nargs="+", help="only these datasets of the config")
    ap.add_argument("--systems", nargs="+", help="only these systems of the config")
    ap.add_argument("--output-dir", help="override the config's output_dir")
    ap.add_argument("--threads", type=int, help="search threads (default: all cores)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild cached indexes")
    ap.add_argument("--no-efficiency", action="store_true", help="skip latency measurements")
    ap.add_argument("--fresh", action="store_true", help="drop rows of an existing results.json")
    args = ap.parse_args(argv)

    config_path = str(Path(args.config))  # as given: it is what the report's command lines show
    cfg = load_config(from_root(config_path))
    out_dir = from_root(args.output_dir or cfg.get("output_dir", "evaluation/results/beir"))
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets = [d for d in cfg["datasets"] if not args.datasets or d["name"] in args.datasets]
    systems = [s for s in cfg["systems"] if not args.systems or s["name"] in args.systems]
    for wanted, have, what in ((args.datasets, [d["name"] for d in cfg["datasets"]], "dataset"),
                               (args.systems, [s["name"] for s in cfg["systems"]], "system")):
        unknown = sorted(set(wanted or []) - set(have))
        if unknown:
            raise SystemExit(f"unknown {what}(s) {unknown}; the config has {have}")
    metrics = cfg.get("metrics", list(DEFAULT_METRICS))
    results_file = out_dir / "results.json"
    previous = json.loads(results_file.read_text()) if results_file.is_file() and not args.fresh else {}
    rows = {(r["dataset"]["name"], r["system"]["name"]): r for r in previous.get("results", [])}
    skipped = {(s["dataset"], s["system"]): s for s in previous.get("skipped", [])}
    from lsr.evaluation import pyserini_ref

    failures = 0
    for d in datasets:
        collection = load_collection(
            dataset_ref(d["name"]), d.get("split"), ignore_identical_ids=d.get("ignore_identical_ids"),
            relevance_level=d.get("relevance_level"), judged_only=d.get("judged_only", False),
        )
        for s in systems:
            key = (collection.name, s["name"])
            spec = SystemSpec.from_config({k: v for k, v in s.items() if k != "optional"})
            if spec.kind == "pyserini-bm25":
                ok, why = pyserini_ref.status()
                if not ok:
                    if not s.get("optional"):
                        raise SystemExit(f"system {spec.name!r}: {why}")
                    print(f"[{collection.name}/{spec.name}] skipped: {why}", file=sys.stderr)
                    skipped[key] = {"dataset": collection.name, "system": spec.name, "reason": why}
                    continue
            t0 = time.perf_counter()
            try:
                row = evaluate_system(
                    spec, collection, k=cfg.get("k", 1000), metrics=metrics, cache_dir=from_root(cfg.get("cache_dir", "indexes/beir")),
                    runs_dir=from_root(cfg.get("runs_dir", "runs/beir")), threads=args.threads, efficiency=not args.no_efficiency,
                    rebuild=args.rebuild, command=f"python evaluation/beir.py --config {config_path} --datasets {d['name']} --systems {spec.name}",
                    log=lambda msg: print(msg, file=sys.stderr, flush=True),
                )
            except (LsrError, ValueError, OSError) as e:
                failures += 1
                traceback.print_exc()
                skipped[key] = {"dataset": collection.name, "system": spec.name, "reason": f"failed: {e}"}
                continue
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows[key] = row
            skipped.pop(key, None)

    order = {(collection_name(dataset_ref(d["name"])), s["name"]): (i, j) for i, d in enumerate(cfg["datasets"]) for j, s in enumerate(cfg["systems"])}
    ordered = sorted(rows.values(), key=lambda r: order.get((r["dataset"]["name"], r["system"]["name"]), (1e9, 1e9)))
    checks = run_checks(cfg, ordered)
    env = environment()
    plot = rep.plot_recall_latency(ordered, out_dir / "recall_latency.png")
    payload = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config_path,
        "config_content": cfg,
        "environment": env,
        "results": ordered,
        "checks": checks,
        "skipped": list(skipped.values()),
    }
    results_file.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    (out_dir / "results.md").write_text(markdown(cfg, ordered, checks, list(skipped.values()), env, config_path, plot), encoding="utf-8")
    print(f"wrote {results_file}, {out_dir / 'results.md'}" + (f", {plot}" if plot else ""), file=sys.stderr)
    print(rep.quality_table(ordered, metrics))
    bad = [c for c in checks if not c["pass"]]
    for c in bad:
        print(f"check failed: {c['dataset']}/{c['system']} {c['metric']} {c['value']:.4f} vs {c['against']} {c['reference']:.4f}", file=sys.stderr)
    return 1 if failures or bad else 0


if __name__ == "__main__":
    sys.exit(main())
