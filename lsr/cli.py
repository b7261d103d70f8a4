"""Command line: `lsr encode | index | export | search | tune | info | quickstart | evaluate | bench | serve`.

Thin by design: each command calls the pipeline or a Retriever; the search modes and their
knob flags are generated from the registry (:mod:`lsr.retrieval.modes`).
"""

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


def _positive(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def cmd_encode(args: argparse.Namespace) -> None:
    from lsr.data import load_queries, resolve_dataset, write_vectors_jsonl
    from lsr.data.anserini import write_json_vectors
    from lsr.encoders import load_encoder
    from lsr.encoders.query_encodings import write_query_encodings
    from lsr.pipeline import encode_corpus

    encoder = load_encoder(_model(args), max_length=args.max_length, query_max_length=args.query_max_length)
    if args.corpus:
        docs, vectors = encode_corpus(args.corpus, encoder, batch_size=args.batch_size)
        ids, texts = [d.id for d in docs], [d.contents for d in docs]
    else:
        queries = load_queries(resolve_dataset(args.queries))
        ids, texts = [q.id for q in queries], [q.text for q in queries]
        vectors = encoder.encode_queries(texts, batch_size=args.batch_size, show_progress_bar=True)
    if args.format == "anserini" and args.corpus:
        write_json_vectors(args.out, ids, vectors, texts, scale=args.scale)
    elif args.format == "anserini":
        write_query_encodings(args.out, ids, vectors, scale=args.scale)
    else:
        write_vectors_jsonl(args.out, ids, vectors)
    print(f"wrote {len(ids)} vectors ({vectors.nnz} non-zeros) to {args.out}", file=sys.stderr)


def cmd_index(args: argparse.Namespace) -> None:
    from lsr.evaluation.cli import query_settings
    from lsr.pipeline import build_index

    dense = {"kind": args.dense_kind, "clusters": args.dense_clusters, "hnsw_m": args.hnsw_m,
             "ef_construction": args.ef_construction, "ivf_lists": args.ivf_lists}
    options = dict(corpus=args.corpus, model=_model(args), vectors=args.vectors, quantization=args.quantization,
                   block_size=args.block_size, reorder=args.reorder, batch_size=args.batch_size,
                   encoder_options={"max_length": args.max_length, **({} if args.document_expansion else {"document_expansion": False})},
                   dense_model=args.dense_model, dense_options={k: v for k, v in dense.items() if v is not None},
                   approx=_approx_settings(args) if args.approx else False)
    if args.shards is not None:
        from lsr.distributed import build_sharded

        if args.ciff:
            raise LsrError("a sharded index is built from --corpus or --vectors, not --ciff")
        print(json.dumps(build_sharded(args.out, args.shards, ray=args.ray, workers=args.workers, query=query_settings(args),
                                       **options), indent=2))
        return
    if args.ray is not None or args.workers is not None:
        raise LsrError("--ray and --workers build a sharded index: give --shards N")
    _, summary = build_index(args.out, ciff=args.ciff, query=query_settings(args), **options)
    print(json.dumps(summary, indent=2))
    for warning in summary["warnings"]:
        print(f"lsr: warning: {warning}", file=sys.stderr)


def _retriever(path: str, ray: str | None = None):
    """A Retriever over an index, a collection or (on Ray) a sharded index."""
    from lsr.distributed.layout import is_sharded
    from lsr.retrieval import Retriever

    if is_sharded(path):
        from lsr.distributed import ShardedRetriever

        return ShardedRetriever(path, ray=ray or "local")
    return Retriever.load(path)


def _model(args: argparse.Namespace) -> str | None:
    """--model, defaulting to the bundled SPLADE where text is encoded (an index of --vectors
    records a query encoder only when one is named; of --ciff, the one an lsr export recorded)."""
    from lsr.encoders.models import DEFAULT_SPLADE

    given = getattr(args, "vectors", None) or getattr(args, "ciff", None)
    return args.model if args.model is not None or given else DEFAULT_SPLADE


def _fusion(args: argparse.Namespace, knobs: dict):
    """A Fusion of the --fuse INDEX[:MODE][=WEIGHT] systems (and --index, weight 1, if given);
    --fusion, --depth, --rrf-k, --normalization set it up; the query flags apply to every system."""
    from lsr.retrieval import Retriever
    from lsr.retrieval.hybrid import FUSION_KNOBS, FusedSystem, Fusion, default_weight, parse_system

    extra = set(knobs) - set(FUSION_KNOBS)
    if extra:
        raise ValueError(f"with --fuse, the knobs are the fusion's ({', '.join(FUSION_KNOBS)}), not {sorted(extra)}")
    specs = ([{"index": args.index, "mode": args.mode, "weight": None}] if args.index else []) + [parse_system(f) for f in args.fuse]
    opened = {path: Retriever.load(path) for path in dict.fromkeys(s["index"] for s in specs)}  # an index in two modes loads once
    return Fusion([FusedSystem(r := opened[s["index"]], default_weight(r.model, s["mode"]) if s["weight"] is None else s["weight"],
                               s["mode"], query=_query_options(args), name=f"{s['index']}:{s['mode']}") for s in specs], **knobs)


def _query_options(args: argparse.Namespace) -> dict:
    """--query-encoder, --[no-]query-expansion, --[no-]query-weighting as search keywords (unset: the index's defaults)."""
    from lsr.evaluation.cli import query_settings

    return {f"query_{k}": v for k, v in query_settings(args).items()}


def _knobs(args: argparse.Namespace) -> dict:
    """The knob flags given (each mode rejects the knobs it does not have, by name)."""
    from lsr.retrieval.modes import all_knobs

    return {name: getattr(args, name) for name in all_knobs() if getattr(args, name, None) is not None}


def _approx_settings(args: argparse.Namespace) -> "ApproxSettings":
    """ApproxSettings from the --n-postings ... flags (unset flags keep their defaults)."""
    from lsr.index.approx import ApproxSettings

    given = {name: getattr(args, name) for name in _APPROX_SETTINGS if getattr(args, name) is not None}
    if given.get("n_postings") == 0:
        given["n_postings"] = None  # 0: keep every posting
    return ApproxSettings(**given)


def cmd_export(args: argparse.Namespace) -> None:
    from lsr.integrations.ciff import export_ciff

    print(json.dumps(export_ciff(args.index, args.ciff, bits=args.bits), indent=2))


def cmd_tune(args: argparse.Namespace) -> None:
    from lsr.data import load_queries, resolve_dataset
    from lsr.retrieval import Retriever
    from lsr.retrieval.collection import Collection

    retriever = Retriever.load(args.index, mmap=False)
    index = retriever.index
    if index.approx is None or args.rebuild:
        index.add_approx(_approx_settings(args))
    queries = load_queries(resolve_dataset(args.queries))
    point = retriever.tune([q.text for q in queries], target_recall=args.target, k=args.k)
    if retriever.collection is not None:
        with Collection.open(args.index, writable=True) as collection:
            collection.update_segment(index)
    else:
        index.save(args.index)
    print(json.dumps({"approx": index.manifest["approx"], "chosen": dataclasses.asdict(point)}, indent=2))
    if not point.reached:
        print(f"lsr tune: no knobs reach recall {args.target} with a margin on these queries; stored the most accurate "
              f"(recall {point.recall:.3f} +/- {point.recall_se:.3f}); rebuild with a larger --n-postings to reach it",
              file=sys.stderr)


def cmd_search(args: argparse.Namespace) -> None:
    from lsr.data import SparseVectors, load_queries, resolve_dataset
    from lsr.data.files import parse_object

    where: dict = {}
    if args.filter is not None:
        where["filter"] = parse_object(args.filter, "--filter")
    if args.fields:
        where.update(fields=[f.strip() for f in args.fields.split(",") if f.strip()], snippet=args.snippet)
    knobs = _knobs(args)
    if args.fuse:
        if args.filter is not None or args.fields:
            raise ValueError("--filter and --fields search one index, not a --fuse of several")
        fusion = _fusion(args, knobs)
        search_one = lambda q, k: fusion.search(q, k)  # noqa: E731
        search_many = lambda qs, k: fusion.search_batch(qs, k)  # noqa: E731
    elif args.index:
        retriever = _retriever(args.index, args.ray)
        search_one = lambda q, k: retriever.search(q, k=k, mode=args.mode, **where, **_query_options(args), **knobs)  # noqa: E731
        search_many = lambda qs, k: retriever.search_batch(qs, k=k, mode=args.mode, filter=where.get("filter"),  # noqa: E731
                                                           **_query_options(args), **knobs)
    else:
        raise ValueError("give --index, or --fuse once per system to fuse")
    if args.query is not None or args.vector is not None:
        query = args.query if args.query is not None else parse_object(args.vector, "--vector")
        if isinstance(query, dict):
            SparseVectors.from_dicts([query], source="--vector")  # weights checked, the line named
        result = search_one(query, args.k or 10)
        fields = result.fields or [{} for _ in result.ids]
        if args.json:
            hits = [{"rank": r, "id": i, "score": s, **f} for r, (i, s, f) in enumerate(zip(result.ids, result.scores, fields), 1)]
            print(json.dumps({"query": query, "strategy": result.strategy, "hits": hits}, indent=2, ensure_ascii=False))
        else:
            for r, (doc_id, score, f) in enumerate(zip(result.ids, result.scores, fields), 1):
                shown = "  ".join(f"{k}={v}" for k, v in f.items())
                print(f"{r:>4}  {score:10.4f}  {doc_id}" + (f"  {shown}" if shown else ""))
        return
    queries = load_queries(resolve_dataset(args.queries))
    results = search_many([q.text for q in queries], args.k or 1000)
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


def cmd_train(args: argparse.Namespace) -> None:
    from lsr.training import data
    from lsr.training.config import TrainConfig
    from lsr.training.trainer import Trainer

    if args.pairs:
        pairs = data.pairs_from_file(args.pairs)
    elif args.titles:
        pairs = data.pairs_from_titles(args.titles)
    else:
        pairs = data.pairs_from_qrels(args.qrels, split=args.split, half=args.query_half)
    corpus = args.corpus or args.titles or (str(data.resolve_dataset(args.qrels)) if args.qrels else None)
    config = TrainConfig(**{f: getattr(args, f) for f in TrainConfig.__dataclass_fields__ if getattr(args, f, None) is not None})
    print(json.dumps(Trainer(config, pairs, corpus).train(), indent=2))


def cmd_info(args: argparse.Namespace) -> None:
    from lsr.distributed.layout import Layout, is_sharded
    from lsr.index import SparseIndex
    from lsr.retrieval.collection import Collection

    layout = Layout.read(args.index) if is_sharded(args.index) else None
    infos = []
    for path in [layout.shard_path(s) for s in range(layout.num_shards)] if layout else [args.index]:
        with Collection.open(path) as collection:
            infos.append(collection.info())
            if args.verify:
                for segment in collection.snapshot().indexes:
                    SparseIndex.load(segment.path, verify=True)
    info = infos[0] if layout is None else {
        **{k: v for k, v in layout.manifest.items() if k != "shards"},
        **{k: sum(i[k] for i in infos) for k in ("num_docs", "deleted_docs", "num_postings", "bytes")},
        "shards": [{"name": n, **{k: i[k] for k in ("num_docs", "deleted_docs", "generation", "bytes")}, "segments": len(i["segments"])}
                   for n, i in zip(layout.names, infos)]}
    if args.json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        print(f"{key:>24}: {value}")


def _sharded_writer(path: str):
    """A sharded index's writer (writes go to the shard owning each id, on a private Ray
    cluster), or None for a collection."""
    from lsr.distributed.layout import is_sharded

    if not is_sharded(path):
        return None
    from lsr.distributed import ShardedRetriever

    return ShardedRetriever(path, ray="local")


def cmd_add(args: argparse.Namespace) -> None:
    """Add (or --upsert) a corpus's documents to a collection, in one commit."""
    from lsr.data import iter_corpus, resolve_dataset
    from lsr.retrieval.collection import Collection

    docs = list(iter_corpus(resolve_dataset(args.corpus)))  # every line checked before anything is added
    if (sharded := _sharded_writer(args.index)) is not None:
        try:
            sharded.add(docs, upsert=args.upsert)
            print(json.dumps({"added": len(docs), "generations": sharded.commit(), "num_docs": sharded.num_docs}))
        finally:
            sharded.close()
        return
    with Collection.open(args.index, writable=True) as collection:
        collection.add(docs, upsert=args.upsert)
        generation = collection.commit()
        print(json.dumps({"added": len(docs), "generation": generation, "num_docs": collection.snapshot().num_docs}))


def cmd_delete(args: argparse.Namespace) -> None:
    """Delete documents by id (ids given, or one per line of a file); unknown ids are reported."""
    from lsr.retrieval.collection import Collection

    ids = args.ids
    if len(ids) == 1 and Path(ids[0]).is_file():
        ids = [line.strip() for line in Path(ids[0]).read_text(encoding="utf-8").splitlines() if line.strip()]
    if (sharded := _sharded_writer(args.index)) is not None:
        try:
            report = sharded.delete(ids)
            generation = sharded.commit()
        finally:
            sharded.close()
    else:
        with Collection.open(args.index, writable=True) as collection:
            report = collection.delete(ids)
            generation = collection.commit()
    print(json.dumps({"deleted": len(report["deleted"]), "not_found": report["not_found"], "generation": generation}))
    if report["not_found"]:
        print(f"lsr: {len(report['not_found'])} id(s) not found: {', '.join(report['not_found'][:5])}", file=sys.stderr)


def cmd_get(args: argparse.Namespace) -> None:
    from lsr.errors import DataError
    from lsr.retrieval.collection import Collection

    with Collection.open(args.index) as collection:
        doc = collection.get(args.id)
    if doc is None:
        raise DataError(f"no document {args.id!r} in {args.index}")
    print(json.dumps({"id": doc.id, "title": doc.title, "text": doc.text, "metadata": doc.metadata}, ensure_ascii=False, indent=2))


def cmd_optimize(args: argparse.Namespace) -> None:
    from lsr.retrieval.collection import Collection

    with Collection.open(args.index, writable=True) as collection:
        generation = collection.optimize(args.max_segments)
        info = collection.info()
    print(json.dumps({"generation": generation, "segments": info["segments"], "num_docs": info["num_docs"]}, indent=2))


def cmd_upgrade(args: argparse.Namespace) -> None:
    from lsr.retrieval.collection import upgrade

    print(f"upgraded {upgrade(args.index)} to a one-segment collection", file=sys.stderr)


def cmd_quickstart(args: argparse.Namespace) -> None:
    from lsr.data import load_queries, resolve_dataset
    from lsr.pipeline import build_index

    data = resolve_dataset(args.dataset)
    model = _model(args)
    out = Path(args.out or f"indexes/{Path(args.dataset).name}-{Path(model).name}")
    print(f"collection {data}; model {model}; index -> {out}")
    retriever, summary = build_index(out, corpus=data, model=model, batch_size=args.batch_size, encoder_options={"max_length": args.max_length})
    print(json.dumps(summary, indent=2))
    queries = load_queries(data)[:QUICKSTART_QUERIES]
    for q, result in zip(queries, retriever.search_batch([q.text for q in queries], k=args.k)):
        print(f"\nquery {q.id}: {q.text[:100]}")
        for r, (doc_id, score) in enumerate(zip(result.ids, result.scores), 1):
            print(f"{r:>4}  {score:8.3f}  {doc_id}")
    print(f"\nnext: lsr search --index {out} --query \"your question\"")


def cmd_bench_encode(args: argparse.Namespace) -> None:
    from lsr.bench.encode import run_encode_benchmark

    result = run_encode_benchmark(
        dataset=args.dataset, model=_model(args), n_docs=args.n_docs, batch_size=args.batch_size,
        max_length=args.max_length, threads=args.threads, repeats=args.repeats, out_dir=args.out_dir,
    )
    print(json.dumps(result, indent=2))


def cmd_bench_exact(args: argparse.Namespace) -> None:
    from lsr.bench.exact import run_bp_timing, run_exact_benchmark, run_reorder_study

    if args.bp_timing:
        print(json.dumps(run_bp_timing(n_docs=args.n_docs, block_size=args.block_size, out_dir=args.out_dir), indent=2))
        return
    if args.reorder_study:
        study = run_reorder_study(workload=args.workload, n_docs=args.n_docs, k_values=tuple(args.k), block_size=args.block_size,
                                  repeats=args.repeats, max_queries=args.max_queries, out_dir=args.out_dir)
        print(json.dumps(study["builds"], indent=2))
        return
    result = run_exact_benchmark(
        workload=args.workload, n_docs=args.n_docs, k_values=tuple(args.k), block_size=args.block_size,
        reorder=args.reorder, repeats=args.repeats, max_queries=args.max_queries, lucene=not args.no_lucene,
        pisa=not args.no_pisa, out_dir=args.out_dir,
    )
    print(json.dumps({"builds": result["builds"], "ratios": result["ratios"]}, indent=2))


def cmd_bench_approx(args: argparse.Namespace) -> None:
    from lsr.bench.approx import run_approx_benchmark

    result = run_approx_benchmark(
        dataset=args.dataset, n_docs=args.n_docs, n_postings=tuple(args.n_postings) if args.n_postings else None,
        repeats=args.repeats, build_repeats=args.build_repeats, max_queries=args.max_queries, out_dir=args.out_dir, clock=args.clock,
    )
    print(json.dumps({"builds": result["builds"], "ratios": result["ratios"], "throughput": result.get("throughput")}, indent=2))


def cmd_bench_collection(args: argparse.Namespace) -> None:
    from lsr.bench.collection import run_collection_benchmark

    result = run_collection_benchmark(args.dataset, segments=args.segments, n_queries=args.max_queries, repeats=args.repeats,
                                      out_dir=args.out_dir)
    print(json.dumps({k: result[k] for k in ("insert", "insert_with_approx", "segments_latency", "filtered_latency", "crossover")}, indent=2))


def cmd_bench_distributed(args: argparse.Namespace) -> None:
    from lsr.bench.distributed import DATASETS, run_distributed_benchmark, run_sizing

    if args.sizing:
        print(json.dumps(run_sizing(args.sizing, out_dir=args.out_dir), indent=2))
        return
    result = run_distributed_benchmark(DATASETS if args.dataset == "all" else (args.dataset,), n_queries=args.max_queries,
                                       repeats=args.repeats, encode_docs=args.encode_docs, out_dir=args.out_dir)
    print(json.dumps(result, indent=2))


def cmd_bench_synth(args: argparse.Namespace) -> None:
    from lsr.bench.data import real_data, vector_stats
    from lsr.bench.synth import synthesize
    from lsr.data import write_vectors_jsonl
    from lsr.encoders import load_encoder

    real = real_data(load_encoder(args.model))
    synth = synthesize(real.docs, args.n_docs, seed=args.seed)
    stats = {"real": vector_stats(real.docs), "synthetic": vector_stats(synth)}
    if args.out:
        write_vectors_jsonl(args.out, [f"s{i}" for i in range(len(synth))], synth)
    print(json.dumps(stats, indent=2))


def add_mode_arguments(p: argparse.ArgumentParser, default: str = "exact") -> None:
    """--mode and one flag per knob of the registry (each mode takes only its own)."""
    from lsr.retrieval.modes import MODES, all_knobs

    p.add_argument("--mode", choices=list(MODES), default=default,
                   help="; ".join(f"{m.name}: {m.help}" for m in MODES.values()))
    g = p.add_argument_group("mode knobs (each mode takes only its own)")
    for knob in all_knobs().values():
        modes = ", ".join(m.name for m in MODES.values() if knob in m.knobs)
        kind = {"choices": list(knob.choices)} if knob.choices else {"type": int if knob.integer else float}
        g.add_argument(f"--{knob.name.replace('_', '-')}", dest=knob.name, help=f"{modes}: {knob.help} (default {knob.default})", **kind)


def build_parser() -> argparse.ArgumentParser:
    from lsr.encoders.models import DEFAULT_SPLADE
    from lsr.evaluation.cli import add_query_arguments
    from lsr.index.dense import KINDS as DENSE_KINDS
    from lsr.bench import EXACT_WORKLOADS
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
        p.add_argument("--model", help=f"'bm25', a SPLADE HF id or local folder, or 'splade-tiny' (bundled; the default: {DEFAULT_SPLADE}); "
                       "with --vectors: the query encoder to record (none if omitted)")
        p.add_argument("--batch-size", type=_positive, default=32)
        p.add_argument("--max-length", type=_positive, default=256, help="document max tokens")

    p = sub.add_parser("encode", help="encode documents or queries to a vectors JSONL file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="collection name, BEIR folder or corpus.jsonl")
    src.add_argument("--queries", help="collection name, BEIR folder, queries.jsonl or qid<TAB>text file")
    p.add_argument("--out", required=True)
    p.add_argument("--format", choices=["lsr", "anserini"], default="lsr",
                   help="lsr: {id, vector: {token: float}}; anserini: documents as a JsonVectorCollection {id, contents, vector: {token: int}}, "
                        "queries as Anserini's qid<TAB>tokens repeated by their integer weight (-topicReader TsvString -impact -pretokenized)")
    p.add_argument("--scale", type=float, default=100, help="anserini: integer weight = round(weight x scale) (default 100); a document weight is at least 1, a query token rounding to 0 is dropped")
    p.add_argument("--query-max-length", type=_positive, default=64)
    model_args(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("index", help="build an index from a corpus (encoding it) or from a vectors file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="collection name, BEIR folder or corpus.jsonl")
    src.add_argument("--vectors", help="vectors JSONL written by `lsr encode` (either format), or an Anserini JsonVectorCollection folder")
    src.add_argument("--ciff", help="a CIFF file (`lsr export`, PISA, Anserini...): integer impacts; --model defaults to the recorded one")
    p.add_argument("--out", required=True, help="index directory (replaced atomically if it exists)")
    p.add_argument("--quantization", choices=["u8", "u16"], default="u16")
    p.add_argument("--block-size", type=_positive, default=32, help="docs per block for block-max pruning")
    p.add_argument("--reorder", choices=REORDERINGS, default="none", help="document reordering before blocking")
    p.add_argument("--approx", action="store_true", help="also build the structure of --mode approx")
    approx_args(p)
    model_args(p)
    sharded = p.add_argument_group("sharded index (search it with a Ray actor per shard)")
    sharded.add_argument("--shards", type=_positive, help="write N collections, documents routed by a hash of their id, and a manifest")
    sharded.add_argument("--ray", metavar="local|auto|ADDRESS", help="encode on Ray actors and write the shards in Ray tasks "
                         "(local: a private one-machine cluster; auto: the cluster this machine is in); default: in this process")
    sharded.add_argument("--workers", type=_positive, help="Ray encoding actors, one CPU each (default: the cluster's CPUs)")
    dense = p.add_argument_group("dense part (for --mode dense|hybrid|selective)")
    dense.add_argument("--dense-model", help="also encode the corpus with this dense model: 'all-MiniLM-L6-v2' (bundled), HF id or folder")
    dense.add_argument("--dense-kind", choices=DENSE_KINDS, help="faiss index: flat (exact inner product, default), hnsw or ivf")
    dense.add_argument("--dense-clusters", type=_positive, help="k-means clusters for selective search (default ~2 sqrt(docs))")
    dense.add_argument("--hnsw-m", type=_positive, help="hnsw: neighbours per node (default 32)")
    dense.add_argument("--ef-construction", type=_positive, help="hnsw: build-time beam width (default 200)")
    dense.add_argument("--ivf-lists", type=_positive, help="ivf: coarse lists (default: the number of clusters)")
    p.add_argument("--document-expansion", action=argparse.BooleanOptionalAction, default=True,
                   help="--no-document-expansion: a SPLADE document keeps only its own tokens' weights")
    add_query_arguments(p, "the index's default")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="search an index with one query or a queries file")
    p.add_argument("--index", help="the index to search (with --fuse: one of the systems, default weight, in --mode)")
    p.add_argument("--fuse", action="append", default=[], metavar="INDEX[:MODE][=WEIGHT]",
                   help="fuse this system's ranking (repeatable: BM25, SPLADE and dense indexes, or one index in several modes) "
                   "by --fusion linear|rrf (default linear) with this weight (default: BM25 0.6, learned sparse 0.4, dense "
                   "see lsr.retrieval.hybrid.DEFAULT_WEIGHTS, validated on the offline collections)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--query", help="query text")
    src.add_argument("--vector", help='query term weights as JSON: \'{"term": weight, ...}\'')
    src.add_argument("--queries", help="collection name, BEIR folder, queries.jsonl or qid<TAB>text file")
    p.add_argument("-k", type=_positive, help="hits per query (default: 10 for one query, 1000 for a queries file: a run deep enough for R@1000)")
    add_mode_arguments(p)
    p.add_argument("--filter", help='metadata filter as JSON, e.g. \'{"year": {"gte": 2000}, "lang": "en"}\' (a collection)')
    p.add_argument("--fields", help="stored fields to show with each hit (single query): title,text,metadata")
    p.add_argument("--snippet", type=_positive, help="cut title and text to this many characters")
    p.add_argument("--json", action="store_true", help="JSON output (single query)")
    p.add_argument("--run-out", help="TREC run file to write (batch); default stdout")
    p.add_argument("--tag", default="lsr", help="run tag in the TREC run")
    add_query_arguments(p)
    p.add_argument("--ray", metavar="local|auto|ADDRESS", help="a sharded index: the Ray cluster its shard actors run on (default: local)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("export", help="write a collection as CIFF (PISA, BMP's ciff2bmp, Anserini, JASS)")
    p.add_argument("--index", required=True)
    p.add_argument("--ciff", required=True, help="output .ciff file")
    p.add_argument("--bits", type=int, choices=[8, 16], default=8,
                   help="impact = round(weight / scale), scale = max weight / (2^bits - 1), at least 1 (default 8: BMP and PISA store 8-bit impacts)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("tune", help="add (or --rebuild) the approx structure; store the cheapest knobs reaching a recall")
    p.add_argument("--index", required=True)
    p.add_argument("--queries", required=True, help="sample queries: collection name, BEIR folder, queries.jsonl or TSV")
    p.add_argument("--target", type=float, default=0.95, help="recall@k against exhaustive search to reach")
    p.add_argument("-k", type=_positive, default=10)
    p.add_argument("--rebuild", action="store_true", help="rebuild the approx structure with the settings given")
    approx_args(p)
    p.set_defaults(func=cmd_tune)

    from lsr.training.config import DISTILLATION, FLOPS_KINDS, NEGATIVE_SOURCES, QUERY_WEIGHTS, START_TEACHER, TrainConfig

    d = TrainConfig(out="")
    p = sub.add_parser("train", help="fine-tune a SPLADE model (contrastive + hard negatives + FLOPS, optional distillation) on CPU",
                       description="Writes Hugging Face checkpoints that `lsr index --model DIR` loads, a training log and a plot.")
    data_src = p.add_mutually_exclusive_group(required=True)
    data_src.add_argument("--pairs", help="JSONL of {\"query\": text, \"positive\": text[, \"positive_id\": id]}")
    data_src.add_argument("--qrels", metavar="DATASET", help="a collection: its queries' judged relevant documents are the positives")
    data_src.add_argument("--titles", metavar="CORPUS", help="a corpus: each document's title is a query for its text")
    p.add_argument("--split", help="--qrels: which qrels split (default: test)")
    p.add_argument("--query-half", choices=["first", "second"], help="--qrels: train on this half of the queries only (report the other)")
    p.add_argument("--corpus", help="where hard negatives are mined (default: the --qrels or --titles collection)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, final model, log, plot); an existing run resumes")
    p.add_argument("--model", help=f"start model (default {d.model})")
    for name, kind in (("steps", int), ("batch_size", int), ("lr", float), ("warmup_steps", int), ("max_length", int),
                       ("query_max_length", int), ("negatives_depth", int), ("flops_query", float), ("flops_document", float),
                       ("flops_warmup", int), ("distill_weight", float), ("teacher_temperature", float), ("teacher_scale", float),
                       ("checkpoint_every", int), ("seed", int), ("threads", int), ("query_weights_lr", float)):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, help=f"default {getattr(d, name)}")
    p.add_argument("--negatives", choices=NEGATIVE_SOURCES, help=f"hard negatives from our BM25 or SPLADE index (default {d.negatives})")
    p.add_argument("--distill", choices=DISTILLATION, help=f"distillation from --teacher (default {d.distill})")
    p.add_argument("--flops-kind", choices=FLOPS_KINDS, help=f"document FLOPS: SPLADE's, or IDF-aware (each term's mean weight / its "
                   f"IDF over the training corpus; Geng et al. 2024) (default {d.flops_kind})")
    p.add_argument("--l0-mask", type=int, help="document FLOPS counts only documents with more than this many non-zeros "
                   f"(l0 mask, Shen et al. 2025; 0: all) (default {d.l0_mask})")
    p.add_argument("--query-weights", choices=QUERY_WEIGHTS, help="queries through the model, or inference-free with a learned per-token "
                   "weight vector (written as idf.json: search with --query-encoder idf-json), trained with the document model or "
                   f"alone (default {d.query_weights})")
    p.add_argument("--teacher", help=f"dense teacher: bundled {d.teacher}, a sentence-transformers folder or HF id; a cross-encoder "
                   "folder or HF id (config: *ForSequenceClassification, one label; its logits as they are); "
                   f"or {START_TEACHER!r}: the start model, frozen (self-distillation)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("info", help="facts about a collection (segments, live and deleted documents, generation) or an index")
    p.add_argument("--index", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--verify", action="store_true", help="check every file's checksum")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("add", help="add a corpus's documents to a collection (one commit)")
    p.add_argument("--index", required=True)
    p.add_argument("--corpus", required=True, help="collection name, BEIR folder or corpus.jsonl (lines may carry 'metadata')")
    p.add_argument("--upsert", action="store_true", help="replace documents whose id exists (default: refuse them)")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("delete", help="delete documents from a collection by id (one commit)")
    p.add_argument("--index", required=True)
    p.add_argument("--ids", required=True, nargs="+", help="ids, or one file holding an id per line")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("get", help="a stored document of a collection, as JSON")
    p.add_argument("--index", required=True)
    p.add_argument("--id", required=True)
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("optimize", help="merge a collection's segments (default: into one)")
    p.add_argument("--index", required=True)
    p.add_argument("--max-segments", type=_positive, default=1)
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("upgrade", help="turn a format-1 index directory into a collection, in place")
    p.add_argument("--index", required=True)
    p.set_defaults(func=cmd_upgrade)

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
    p.add_argument("--dataset", choices=["real", "synth", "gcide"], default="real")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="per-query time: wall, or the thread's CPU time "
                   "(a fallback on a shared machine)")
    p.add_argument("--n-docs", type=_positive, default=1_000_000, help="synthetic corpus size")
    p.add_argument("--n-postings", type=_positive, nargs="+", help="builds to compare (default: scaled from Seismic's advice)")
    p.add_argument("--repeats", type=_positive, default=2)
    p.add_argument("--build-repeats", type=_positive, default=3, help="builds per system and n_postings, alternating (median reported)")
    p.add_argument("--max-queries", type=_positive)
    p.add_argument("--out-dir", default="evaluation/results/approx")
    p.set_defaults(func=cmd_bench_approx)

    p = bsub.add_parser("collection", help="collection writes (inserts, commits), search over segments, filtered search")
    p.add_argument("--dataset", choices=["scifact", "gcide"], default="scifact")
    p.add_argument("--segments", type=_positive, default=16, help="commits the documents are inserted in (segments before optimize)")
    p.add_argument("--max-queries", type=_positive, default=300)
    p.add_argument("--repeats", type=_positive, default=3)
    p.add_argument("--out-dir", default="evaluation/results/collection")
    p.set_defaults(func=cmd_bench_collection)

    p = bsub.add_parser("distributed", help="sharded search on Ray: scatter-gather overhead at 1, 2, 4 shards; encoding on Ray workers")
    p.add_argument("--dataset", choices=["scifact", "gcide", "all"], default="all")
    p.add_argument("--max-queries", type=_positive, default=300)
    p.add_argument("--repeats", type=_positive, default=3)
    p.add_argument("--encode-docs", type=int, default=600, help="SciFact documents encoded on 1 and 2 Ray workers (0: skip)")
    p.add_argument("--sizing", type=_positive, metavar="N", help="instead: bytes per document of an N-document synthetic shard")
    p.add_argument("--out-dir", default="evaluation/results/distributed")
    p.set_defaults(func=cmd_bench_distributed)

    p = bsub.add_parser("synth", help="grow real splade-tiny encodings into a synthetic corpus; print statistics")
    p.add_argument("--n-docs", type=_positive, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=DEFAULT_SPLADE)
    p.add_argument("--out", help="also write the vectors as JSONL (for `lsr index --vectors`)")
    p.set_defaults(func=cmd_bench_synth)

    p = bsub.add_parser("exact", help="exact search (planner and forced strategies) vs bmp, PISA, Lucene and scipy")
    p.add_argument("--workload", choices=EXACT_WORKLOADS, default="splade-real")
    p.add_argument("--n-docs", type=_positive, default=1_000_000, help="synthetic corpus size")
    p.add_argument("-k", type=_positive, nargs="+", default=[10, 1000])
    p.add_argument("--block-size", type=_positive, default=32)
    p.add_argument("--reorder", choices=REORDERINGS, default="dominant")
    p.add_argument("--repeats", type=_positive, default=3)
    p.add_argument("--max-queries", type=_positive)
    p.add_argument("--no-lucene", action="store_true", help="skip pyserini's Lucene impact search")
    p.add_argument("--no-pisa", action="store_true", help="skip PISA (pyterrier-pisa)")
    p.add_argument("--reorder-study", action="store_true",
                   help="instead: our strategies on each document order (none, dominant, bp), with build times")
    p.add_argument("--bp-timing", action="store_true",
                   help="instead: time BP reordering alone of --n-docs synthetic docs (threads, iteration caps)")
    p.add_argument("--out-dir", default="evaluation/results/exact")
    p.set_defaults(func=cmd_bench_exact)

    from lsr.evaluation.cli import add_evaluate_parser
    from lsr.service.server import add_serve_parser

    add_evaluate_parser(sub)
    serve = add_serve_parser(sub)
    serve.add_argument("--ray", metavar="local|auto|ADDRESS", help="a sharded index: the Ray cluster its shard actors run on (default: local)")
    serve.set_defaults(func=cmd_serve)
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    """`lsr serve`; a sharded directory is opened as a ShardedRetriever in the one server process."""
    from lsr.distributed.layout import is_sharded
    from lsr.service.server import run_serve

    if is_sharded(args.index):
        from lsr.distributed import ShardedRetriever

        return run_serve(args, opener=lambda: ShardedRetriever(args.index, ray=args.ray or "local"))
    if args.ray is not None:
        raise LsrError(f"--ray serves a sharded index; {args.index} is not one")
    return run_serve(args)


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
