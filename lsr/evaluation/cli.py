"""`lsr evaluate`: score a system (or an existing run) on a collection with trec_eval semantics.

Registered on lsr/cli.py's parser by :func:`add_evaluate_parser`; errors it raises are LsrError/ValueError.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from lsr.evaluation.metrics import DEFAULT_METRICS


def _param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _positive(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def add_query_arguments(p: argparse.ArgumentParser, what: str = "this search's") -> None:
    """The query-side flags: which encoder turns query texts into term weights, and the Unified
    framework's toggles (no query expansion, binary query weights)."""
    from lsr.encoders.inference_free import QUERY_ENCODERS

    g = p.add_argument_group("query encoding (default: what the index records)")
    g.add_argument("--query-encoder", help=f"{what} query encoder: " + "; ".join(f"{k}: {v}" for k, v in QUERY_ENCODERS.items())
                   + " ('splade' or 'bm25' name the index's own model)")
    g.add_argument("--query-expansion", action=argparse.BooleanOptionalAction, default=None,
                   help="--no-query-expansion: a query keeps only its own tokens' weights")
    g.add_argument("--query-weighting", action=argparse.BooleanOptionalAction, default=None,
                   help="--no-query-weighting: every query term weighs 1 (binary)")


def query_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The query flags given (``encoder``, ``expansion``, ``weighting``); unset ones are left out."""
    given = {"encoder": args.query_encoder, "expansion": args.query_expansion, "weighting": args.query_weighting}
    return {k: v for k, v in given.items() if v is not None}


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``evaluate`` on an argparse sub-parsers object; returns the new parser."""
    from lsr.retrieval.modes import MODES

    p = subparsers.add_parser(
        "evaluate",
        help="score a system on a collection (nDCG@10, RR@10, R@100, R@1000, Judged@10 + efficiency)",
        description="Search a collection's queries with an index, a model, or pyserini's BM25 (or take an "
        "existing TREC run), save the run with its description, and score it with trec_eval semantics.",
    )
    p.add_argument("--dataset", required=True, help="collection: name in ../shared/data, BEIR folder, or ir_datasets id "
                   "(beir/scifact/test, msmarco-passage/dev/small, msmarco-passage/trec-dl-2019/judged)")
    p.add_argument("--split", help="qrels split (default: test, or the id's own split)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", help="an lsr index directory")
    src.add_argument("--model", help="'bm25' or a SPLADE model ('splade-tiny', a folder, an HF id): builds and caches an index")
    src.add_argument("--run", help="score an existing TREC run file instead of searching")
    src.add_argument("--pyserini", action="store_true", help="pyserini's Lucene BM25 on the same corpus (needs the pyserini extra)")
    src.add_argument("--fuse", action="append", metavar="SYSTEM[:MODE][=WEIGHT]",
                     help="fuse systems (repeat): SYSTEM is an index directory or a model ('bm25', 'splade-tiny'...; --param and "
                     "--dense-model apply to the non-BM25 ones), e.g. --fuse bm25=0.4 --fuse splade-tiny=0.3 --fuse splade-tiny:dense=0.3 "
                     "--dense-model all-MiniLM-L6-v2 (weights default to lsr.retrieval.hybrid.DEFAULT_WEIGHTS); "
                     "--knob fusion=linear|rrf (default linear), depth=, rrf_k=, normalization=")
    p.add_argument("--mode", default="exact", choices=list(MODES), help="; ".join(f"{m.name}: {m.help}" for m in MODES.values()))
    p.add_argument("--knob", type=_param, action="append", default=[], metavar="NAME=VALUE",
                   help="a knob of the mode (e.g. query_cut=5, heap_factor=0.9, dense_weight=0.3)")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), help="e.g. nDCG@10 MRR@10 Recall@1000 judged@10")
    p.add_argument("-k", "--k", type=_positive, default=1000, help="hits per query (default 1000)")
    p.add_argument("--qrels", help="qrels file overriding the collection's (BEIR TSV or TREC)")
    p.add_argument("--queries", help="topics file overriding the collection's (jsonl, TSV or TREC SGML)")
    p.add_argument("--query-encodings", help="Anserini query-encoding file (qid<TAB>tokens) to search instead of encoding texts")
    ident = p.add_mutually_exclusive_group()
    ident.add_argument("--ignore-identical-ids", dest="ignore_identical_ids", action="store_true", default=None,
                       help="drop hits whose id equals the query id (default: on for arguana, quora)")
    ident.add_argument("--keep-identical-ids", dest="ignore_identical_ids", action="store_false")
    p.add_argument("--relevance-level", type=int, help="minimum relevance counted by Recall/RR (default 1; 2 for TREC DL)")
    p.add_argument("--judged-only", action="store_true", help="search only queries that have judgments")
    p.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE",
                   help="index build setting for --model/--pyserini (k1=0.9, b=0.4, quantization=u8, max_length=256 ...)")
    p.add_argument("--dense-model", help="also build a dense part with this model (for --mode dense/hybrid/selective), e.g. all-MiniLM-L6-v2")
    p.add_argument("--query-max-length", type=_positive, help="query tokens the SPLADE model reads (default 64)")
    add_query_arguments(p)
    p.add_argument("--name", help="system name in runs and reports (default: the model or index, plus the mode and a digest of "
                   "the other settings, so that differently built or searched systems never share a cache or a run file)")
    p.add_argument("--cache-dir", default="indexes/evaluate", help="where --model/--pyserini indexes are cached")
    p.add_argument("--runs-dir", default="runs", help="where runs are written (<runs-dir>/<dataset>/<system>.trec)")
    p.add_argument("--threads", type=_positive, help="search threads (default: all cores)")
    p.add_argument("--no-efficiency", action="store_true", help="skip the per-query latency measurement")
    p.add_argument("--rebuild", action="store_true", help="rebuild a cached index")
    p.add_argument("--output", help="write the full report as JSON here")
    p.add_argument("--per-query", action="store_true", help="include per-query values in --output")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_evaluate)
    return p


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run `lsr evaluate`; prints the scores (or JSON) and returns the report."""
    from lsr.data import load_collection, read_run
    from lsr.evaluation.harness import SystemSpec, dataset_description, evaluate_system
    from lsr.retrieval.modes import get_mode
    from lsr.evaluation.metrics import evaluate, parse_metric

    for m in args.metrics:
        parse_metric(m)  # fail before any work
    get_mode(args.mode)
    collection = load_collection(
        args.dataset, args.split, qrels=args.qrels, queries=args.queries, judged_only=args.judged_only,
        relevance_level=args.relevance_level, ignore_identical_ids=args.ignore_identical_ids,
    )
    params = dict(args.param)
    if args.dense_model:
        params["dense"] = {**params.get("dense", {}), "model": args.dense_model}
    if args.query_max_length:
        params["query_max_length"] = args.query_max_length
    query = query_settings(args)
    command = "lsr evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["evaluate"] else None
    if args.run:
        run = read_run(args.run)
        result = evaluate(
            run, collection.qrels, args.metrics, query_ids=[q.id for q in collection.queries],
            relevance_level=collection.relevance_level, ignore_identical_ids=collection.ignore_identical_ids,
        )
        report = {
            "dataset": dataset_description(collection),
            "system": {"name": args.name or Path(args.run).name, "kind": "run-file", "run": args.run},
            "metrics": result.scores,
            "evaluation": {k: v for k, v in result.to_dict(per_query=args.per_query).items() if k != "scores"},
            "efficiency": {},
            "notes": collection.notes + result.notes,
        }
    else:
        if args.fuse:
            spec = SystemSpec(name=args.name or _name("fusion", args, {"fuse": args.fuse, **params}), kind="fusion",
                              systems=_fused_systems(args.fuse, params, query), knobs=dict(args.knob))
        elif args.pyserini:
            spec = SystemSpec(name=args.name or "bm25-pyserini", kind="pyserini-bm25", params=params, mode=args.mode,
                              knobs=dict(args.knob))
        elif args.index:
            spec = SystemSpec(name=args.name or _name(Path(args.index).name, args, {}), kind="index", index=args.index, mode=args.mode, knobs=dict(args.knob),
                              query_encodings=args.query_encodings, query=query)
        else:
            spec = SystemSpec(name=args.name or _name(Path(args.model).name, args, params), kind="lsr", model=args.model, params=params,
                              mode=args.mode, knobs=dict(args.knob), query_encodings=args.query_encodings, query=query)
        if args.query_encodings and args.pyserini:
            raise ValueError("--query-encodings applies to lsr indexes, not to --pyserini")
        report = evaluate_system(
            spec, collection, k=args.k, metrics=args.metrics, cache_dir=args.cache_dir, runs_dir=args.runs_dir,
            threads=args.threads, efficiency=not args.no_efficiency, rebuild=args.rebuild, command=command,
            log=lambda msg: print(msg, file=sys.stderr),
        )
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print_report(report)
    return report


def _fused_systems(texts: list[str], params: dict[str, Any], query: dict[str, Any]) -> list[dict[str, Any]]:
    """SystemSpec configs of the --fuse systems (with their weights)."""
    from lsr.encoders.bm25 import is_bm25
    from lsr.retrieval import Retriever
    from lsr.retrieval.hybrid import default_weight, parse_system

    systems = []
    for text in texts:
        s = parse_system(text)
        name = f"{Path(s['index']).name}:{s['mode']}"
        if Path(s["index"]).is_dir():
            cfg = {"name": name, "kind": "index", "index": s["index"]}
            model = Retriever.load(s["index"]).model
        else:
            cfg = {"name": name, "kind": "lsr", "model": s["index"], "params": {} if is_bm25(s["index"]) else dict(params)}
            model = s["index"]
        weight = default_weight(model, s["mode"]) if s["weight"] is None else s["weight"]
        systems.append({**cfg, "mode": s["mode"], "query": query, "weight": weight})
    return systems


def _name(base: str, args: argparse.Namespace, params: dict[str, Any]) -> str:
    """A default system name that differs whenever the build or search settings do."""
    import hashlib

    name = base if args.mode == "exact" else f"{base}-{args.mode}"
    query = query_settings(args)
    settings = {"params": params, "knobs": dict(args.knob), "query_encodings": args.query_encodings, **({"query": query} if query else {})}
    if params or args.knob or args.query_encodings or query:
        name += "-" + hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return name


def _print_report(report: dict[str, Any]) -> None:
    ds, system = report["dataset"], report["system"]
    print(f"dataset {ds['name']} ({ds['split']}): {report['evaluation']['num_queries']} queries scored "
          f"of {ds['queries']} ({ds['judged_queries']} judged); system {system['name']}")
    for name, value in report["metrics"].items():
        print(f"{name:>12}: {value:.4f}")
    eff = report.get("efficiency") or {}
    for key in ("encode_ms_per_query", "latency_ms_p50", "latency_ms_p99", "qps", "index_bytes", "build_seconds", "recall_vs_exact"):
        if eff.get(key) is not None:
            value = eff[key]
            print(f"{key:>20}: {value:,.3f}" if isinstance(value, float) else f"{key:>20}: {value:,}")
    if report.get("run"):
        print(f"run: {report['run']['path']} (sha256 {report['run']['sha256'][:12]}…)")
    for note in report.get("notes", []):
        print(f"note: {note}")

