"""Command line: `lsr encode | index | search | tune | info | quickstart | bench | serve`. Thin by design."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lsr.errors import LsrError

if TYPE_CHECKING:
    from lsr.index.approx import ApproxSettings

QUICKSTART_QUERIES = 3
_APPROX_SETTINGS = ("n_postings", "max_fraction", "centroid_fraction", "summary_energy")
# `lsr search` options of the dense modes, passed on only when given.
_FUSION_OPTIONS = ("fusion", "normalization", "depth", "candidates", "centroids", "ef_search", "nprobe")


def _positive(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def cmd_encode(args: argparse.Namespace) -> None:
    from lsr.data import load_queries, resolve_dataset, write_vectors_jsonl
    from lsr.encoders import SpladeEncoder
    from lsr.pipeline import encode_corpus

    encoder = SpladeEncoder(args.model, max_length=args.max_length, query_max_length=args.query_max_length)
    if args.corpus:
        ids, vectors = encode_corpus(args.corpus, encoder, batch_size=args.batch_size)
    else:
        queries = load_queries(resolve_dataset(args.queries))
        ids = [q.id for q in queries]
        vectors = encoder.encode_queries([q.text for q in queries], batch_size=args.batch_size, show_progress_bar=True)
    write_vectors_jsonl(args.out, ids, vectors)
    print(f"wrote {len(ids)} vectors ({vectors.nnz} non-zeros) to {args.out}", file=sys.stderr)


def cmd_index(args: argparse.Namespace) -> None:
    from lsr.pipeline import build_index

    dense = {"kind": args.dense_kind, "clusters": args.dense_clusters, "hnsw_m": args.hnsw_m,
             "ef_construction": args.ef_construction, "ivf_lists": args.ivf_lists}
    _, summary = build_index(
        args.out, corpus=args.corpus, model=args.model, vectors=args.vectors, quantization=args.quantization,
        block_size=args.block_size, reorder=args.reorder, batch_size=args.batch_size, max_length=args.max_length,
        dense_model=args.dense_model, dense_options={k: v for k, v in dense.items() if v is not None},
        approx=_approx_settings(args) if args.approx else False,
    )
    print(json.dumps(summary, indent=2))


def _approx_settings(args: argparse.Namespace) -> "ApproxSettings":
    """ApproxSettings from the --n-postings ... flags (unset flags keep their defaults)."""
    from lsr.index.approx import ApproxSettings

    given = {name: getattr(args, name) for name in _APPROX_SETTINGS if getattr(args, name) is not None}
    if given.get("n_postings") == 0:
        given["n_postings"] = None  # 0: keep every posting
    return ApproxSettings(**given)


def cmd_tune(args: argparse.Namespace) -> None:
    from lsr.data import load_queries, resolve_dataset
    from lsr.index import Index

    index = Index.load(args.index, mmap=False)
    if index.approx is None or args.rebuild:
        index.add_approx(_approx_settings(args))
    queries = load_queries(resolve_dataset(args.queries))
    point = index.tune(index.encode_queries([q.text for q in queries]), target_recall=args.target, k=args.k)
    index.save(args.index)
    print(json.dumps({"approx": index.manifest["approx"], "chosen": dataclasses.asdict(point)}, indent=2))


def cmd_search(args: argparse.Namespace) -> None:
    from lsr.data import load_queries, resolve_dataset
    from lsr.index import Index

    index = Index.load(args.index)
    # Dense-mode options go on only when given: a sparse mode rejects them by name.
    fusion = {name: getattr(args, name) for name in _FUSION_OPTIONS if getattr(args, name) is not None}
    approx = {name: getattr(args, name) for name in ("query_cut", "heap_factor") if getattr(args, name) is not None}
    knobs = {"mode": args.mode, "alpha": args.alpha, "beta": args.beta, **approx, **fusion}
    if args.query is not None:
        result = index.search(args.query, k=args.k, **knobs)
        if args.json:
            hits = [{"rank": r, "id": i, "score": s} for r, (i, s) in enumerate(zip(result.ids, result.scores), 1)]
            print(json.dumps({"query": args.query, "hits": hits}, indent=2))
        else:
            for r, (doc_id, score) in enumerate(zip(result.ids, result.scores), 1):
                print(f"{r:>4}  {score:10.4f}  {doc_id}")
        return
    queries = load_queries(resolve_dataset(args.queries))
    results = index.search_batch([q.text for q in queries], k=args.k, **knobs)
    lines = [
        f"{q.id} Q0 {doc_id} {r} {score:.6f} {args.tag}\n"
        for q, result in zip(queries, results)
        for r, (doc_id, score) in enumerate(zip(result.ids, result.scores), 1)
    ]
    if not args.run_out:
        sys.stdout.writelines(lines)
        return
    Path(args.run_out).write_text("".join(lines), encoding="utf-8")
    print(f"wrote {len(lines)} lines for {len(queries)} queries to {args.run_out}", file=sys.stderr)


def cmd_info(args: argparse.Namespace) -> None:
    from lsr.index import Index

    info = Index.load(args.index, verify=args.verify).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        print(f"{key:>24}: {value}")


def cmd_quickstart(args: argparse.Namespace) -> None:
    from lsr.data import load_queries, resolve_dataset
    from lsr.pipeline import build_index

    data = resolve_dataset(args.dataset)
    out = Path(args.out or f"indexes/{Path(args.dataset).name}-{Path(args.model).name}")
    print(f"collection {data}; model {args.model}; index -> {out}")
    index, summary = build_index(out, corpus=data, model=args.model, batch_size=args.batch_size)
    print(json.dumps(summary, indent=2))
    queries = load_queries(data)[:QUICKSTART_QUERIES]
    for q, result in zip(queries, index.search_batch([q.text for q in queries], k=args.k)):
        print(f"\nquery {q.id}: {q.text[:100]}")
        for r, (doc_id, score) in enumerate(zip(result.ids, result.scores), 1):
            print(f"{r:>4}  {score:8.3f}  {doc_id}")
    print(f"\nnext: lsr search --index {out} --query \"your question\"")


def cmd_bench_encode(args: argparse.Namespace) -> None:
    from lsr.bench.encode import run_encode_benchmark

    result = run_encode_benchmark(
        dataset=args.dataset, model=args.model, n_docs=args.n_docs, batch_size=args.batch_size,
        max_length=args.max_length, threads=args.threads, repeats=args.repeats, out_dir=args.out_dir,
    )
    print(json.dumps(result, indent=2))


def cmd_bench_exact(args: argparse.Namespace) -> None:
    from lsr.bench.exact import run_exact_benchmark

    result = run_exact_benchmark(
        dataset=args.dataset, n_docs=args.n_docs, k_values=tuple(args.k), block_size=args.block_size,
        reorder=args.reorder, repeats=args.repeats, max_queries=args.max_queries, lucene=not args.no_lucene,
        out_dir=args.out_dir,
    )
    print(json.dumps({"builds": result["builds"], "runs": result["runs"]}, indent=2))


def cmd_bench_approx(args: argparse.Namespace) -> None:
    from lsr.bench.approx import run_approx_benchmark

    result = run_approx_benchmark(
        dataset=args.dataset, n_docs=args.n_docs, n_postings=tuple(args.n_postings) if args.n_postings else None,
        repeats=args.repeats, max_queries=args.max_queries, out_dir=args.out_dir,
    )
    print(json.dumps({"builds": result["builds"], "ratios": result["ratios"], "throughput": result.get("throughput")}, indent=2))


def cmd_bench_synth(args: argparse.Namespace) -> None:
    from lsr.bench.data import real_data, vector_stats
    from lsr.bench.synth import synthesize
    from lsr.data import write_vectors_jsonl
    from lsr.encoders import SpladeEncoder

    real = real_data(SpladeEncoder(args.model))
    synth = synthesize(real.docs, args.n_docs, seed=args.seed)
    stats = {"real": vector_stats(real.docs), "synthetic": vector_stats(synth)}
    if args.out:
        write_vectors_jsonl(args.out, [f"s{i}" for i in range(len(synth))], synth)
    print(json.dumps(stats, indent=2))


def build_parser() -> argparse.ArgumentParser:
    from lsr.encoders import DEFAULT_SPLADE
    from lsr.fusion.fuse import FUSIONS, NORMALIZATIONS
    from lsr.index.dense import DENSE_MODES, KINDS as DENSE_KINDS
    from lsr.index.index import MODES
    from lsr.index.reorder import REORDERINGS

    parser = argparse.ArgumentParser(prog="lsr", description="Learned sparse retrieval: encode, index, search.")
    sub = parser.add_subparsers(dest="command", required=True)

    def approx_args(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("approx structure (for --mode approx)")
        g.add_argument("--n-postings", type=int, help="mean postings kept per term (0: all; default 4000)")
        g.add_argument("--max-fraction", type=float, help="a list keeps at most this x n-postings (default 1.5)")
        g.add_argument("--centroid-fraction", type=float, help="blocks per list, as a fraction of its postings (default 0.1)")
        g.add_argument("--summary-energy", type=float, help="fraction of a block summary's mass kept (default 0.4)")

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", default=DEFAULT_SPLADE, help="HF id, local folder, or 'splade-tiny' (bundled)")
        p.add_argument("--batch-size", type=_positive, default=32)
        p.add_argument("--max-length", type=_positive, default=256, help="document max tokens")

    p = sub.add_parser("encode", help="encode documents or queries to a vectors JSONL file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="collection name, BEIR folder or corpus.jsonl")
    src.add_argument("--queries", help="collection name, BEIR folder, queries.jsonl or qid<TAB>text file")
    p.add_argument("--out", required=True)
    p.add_argument("--query-max-length", type=_positive, default=64)
    model_args(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("index", help="build an index from a corpus (encoding it) or from a vectors file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="collection name, BEIR folder or corpus.jsonl")
    src.add_argument("--vectors", help="vectors JSONL written by `lsr encode`")
    p.add_argument("--out", required=True, help="index directory (replaced atomically if it exists)")
    p.add_argument("--quantization", choices=["u8", "u16"], default="u16")
    p.add_argument("--block-size", type=_positive, default=32, help="docs per block for block-max pruning")
    p.add_argument("--reorder", choices=REORDERINGS, default="none", help="document reordering before blocking")
    p.add_argument("--approx", action="store_true", help="also build the structure of --mode approx")
    approx_args(p)
    model_args(p)
    dense = p.add_argument_group("dense part (for --mode dense|hybrid|selective)")
    dense.add_argument("--dense-model", help="also encode the corpus with this dense model: 'all-MiniLM-L6-v2' (bundled), HF id or folder")
    dense.add_argument("--dense-kind", choices=DENSE_KINDS, help="faiss index: flat (exact inner product, default), hnsw or ivf")
    dense.add_argument("--dense-clusters", type=_positive, help="k-means clusters for selective search (default ~2 sqrt(docs))")
    dense.add_argument("--hnsw-m", type=_positive, help="hnsw: neighbours per node (default 32)")
    dense.add_argument("--ef-construction", type=_positive, help="hnsw: build-time beam width (default 200)")
    dense.add_argument("--ivf-lists", type=_positive, help="ivf: coarse lists (default: the number of clusters)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="search an index with one query or a queries file")
    p.add_argument("--index", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--query", help="query text")
    src.add_argument("--queries", help="collection name, BEIR folder, queries.jsonl or qid<TAB>text file")
    p.add_argument("-k", type=_positive, default=10)
    p.add_argument("--mode", choices=MODES + DENSE_MODES, default="exact", help="dense modes need an index built with --dense-model")
    p.add_argument("--alpha", type=float, help="sparse modes: block-max pruning aggressiveness (default 1 = safe); "
                   "hybrid/selective with --fusion linear: the dense weight (default 0.5)")
    p.add_argument("--fusion", choices=FUSIONS, help="hybrid/selective: reciprocal rank fusion (default) or linear interpolation")
    p.add_argument("--normalization", choices=NORMALIZATIONS, help="linear fusion: score normalization (default minmax)")
    p.add_argument("--depth", type=_positive, help="hybrid/selective: candidates per side before fusing (default 100)")
    p.add_argument("--candidates", type=_positive, help="selective: score the clusters of the sparse top N (default 10)")
    p.add_argument("--centroids", type=int, help="selective: and the N clusters with the closest centroids (default 4)")
    p.add_argument("--ef-search", type=_positive, help="dense kind hnsw: search beam width")
    p.add_argument("--nprobe", type=_positive, help="dense kind ivf: lists probed")
    p.add_argument("--beta", type=float, default=1.0, help="fraction of heaviest query terms kept (1 = all)")
    p.add_argument("--query-cut", type=int, help="approx: walk the lists of this many heaviest query terms (default: tuned)")
    p.add_argument("--heap-factor", type=float, help="approx: skip blocks whose summary scores below this x the k-th score")
    p.add_argument("--json", action="store_true", help="JSON output (single query)")
    p.add_argument("--run-out", help="TREC run file to write (batch); default stdout")
    p.add_argument("--tag", default="lsr", help="run tag in the TREC run")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("tune", help="add (or --rebuild) the approx structure; store the cheapest knobs reaching a recall")
    p.add_argument("--index", required=True)
    p.add_argument("--queries", required=True, help="sample queries: collection name, BEIR folder, queries.jsonl or TSV")
    p.add_argument("--target", type=float, default=0.95, help="recall@k against exhaustive search to reach")
    p.add_argument("-k", type=_positive, default=10)
    p.add_argument("--rebuild", action="store_true", help="rebuild the approx structure with the settings given")
    approx_args(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("info", help="facts about an index")
    p.add_argument("--index", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--verify", action="store_true", help="check every file's checksum")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("quickstart", help="encode a collection, index it, and show hits for a few queries")
    p.add_argument("--dataset", default="vaswani", help="collection name or BEIR folder (default: vaswani)")
    p.add_argument("--out", help="index directory (default: indexes/<dataset>-<model>)")
    p.add_argument("-k", type=_positive, default=5)
    model_args(p)
    p.set_defaults(func=cmd_quickstart)

    bench = sub.add_parser("bench", help="benchmarks writing results under evaluation/results/")
    bsub = bench.add_subparsers(dest="bench", required=True)
    p = bsub.add_parser("encode", help="our SPLADE encoder vs sentence-transformers' SparseEncoder")
    p.add_argument("--dataset", default="scifact")
    p.add_argument("--n-docs", type=_positive, default=1000)
    p.add_argument("--threads", type=_positive)
    p.add_argument("--repeats", type=_positive, default=3)
    p.add_argument("--out-dir", default="evaluation/results/encode")
    model_args(p)
    p.set_defaults(func=cmd_bench_encode)

    p = bsub.add_parser("approx", help="approximate search vs Seismic (Rust): recall/latency curves, builds, throughput")
    p.add_argument("--dataset", choices=["real", "synth"], default="real")
    p.add_argument("--n-docs", type=_positive, default=1_000_000, help="synthetic corpus size")
    p.add_argument("--n-postings", type=_positive, nargs="+", help="builds to compare (default: scaled from Seismic's advice)")
    p.add_argument("--repeats", type=_positive, default=2)
    p.add_argument("--max-queries", type=_positive)
    p.add_argument("--out-dir", default="evaluation/results/approx")
    p.set_defaults(func=cmd_bench_approx)

    p = bsub.add_parser("synth", help="grow real splade-tiny encodings into a synthetic corpus; print statistics")
    p.add_argument("--n-docs", type=_positive, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=DEFAULT_SPLADE)
    p.add_argument("--out", help="also write the vectors as JSONL (for `lsr index --vectors`)")
    p.set_defaults(func=cmd_bench_synth)

    p = bsub.add_parser("exact", help="exhaustive and block-max search vs bmp (Rust) and Lucene impact search")
    p.add_argument("--dataset", choices=["real", "synth"], default="real")
    p.add_argument("--n-docs", type=_positive, default=1_000_000, help="synthetic corpus size")
    p.add_argument("-k", type=_positive, nargs="+", default=[10, 1000])
    p.add_argument("--block-size", type=_positive, default=32)
    p.add_argument("--reorder", choices=REORDERINGS, default="dominant")
    p.add_argument("--repeats", type=_positive, default=3)
    p.add_argument("--max-queries", type=_positive)
    p.add_argument("--no-lucene", action="store_true", help="skip pyserini's Lucene impact search")
    p.add_argument("--out-dir", default="evaluation/results/exact")
    p.set_defaults(func=cmd_bench_exact)

    from lsr.evaluation.cli import add_evaluate_parser
    from lsr.service.server import add_serve_parser

    add_evaluate_parser(sub)
    add_serve_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (LsrError, ValueError, FileNotFoundError) as e:
        print(f"lsr: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
