#!/usr/bin/env python
"""Encoders beyond one frozen model (issue 16): the inference-free query encoder and the Unified
framework's toggles, measured on every offline collection through the evaluation harness.

For each collection, two splade-tiny indexes are built from the cached document encodings
(``~/.cache/lsr/vectors``, what ``lsr bench`` uses; equal to a fresh encoding): documents as
encoded (expansion on) and restricted to their own tokens (``document_expansion=False``: the
same weights on the document's own word pieces, what the encoder's toggle gives). Each is
searched with SPLADE queries with/without query expansion and with/without query weighting, and
with the inference-free query encoder (tokens x the collection's IDF); BM25 is the reference.
Every system goes through :func:`lsr.evaluation.harness.evaluate_system` (run written and scored
with trec_eval semantics; search latency on single pre-encoded queries, query encoding per query
in a batch). ``--rest`` also measures end-to-end REST latency (HTTP to a real ``lsr serve`` on
127.0.0.1) of the inference-free and SPLADE query paths on SciFact, interleaved.

    flock -s /work/bench.lock python evaluation/encoders.py [--datasets scifact ...] [--rest]
    flock -x /work/bench.lock python evaluation/encoders.py --datasets --encode-timing   # timings only

Writes ``results.json``, ``results.md`` and ``ndcg_latency.png`` under evaluation/results/encoders/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402

from lsr.bench.data import FULL_COLLECTIONS, encoded_collection  # noqa: E402
from lsr.data import SparseVectors, iter_corpus, load_collection, resolve_dataset  # noqa: E402
from lsr.encoders import SpladeEncoder  # noqa: E402
from lsr.encoders.splade import CHARS_PER_TOKEN  # noqa: E402
from lsr.evaluation.common import git_commit, safe_name  # noqa: E402
from lsr.evaluation.harness import SystemSpec, evaluate_system  # noqa: E402
from lsr.index import SparseIndex  # noqa: E402
from lsr.util import cache_dir  # noqa: E402

OUT = PROJECT_ROOT / "evaluation" / "results" / "encoders"
# (name, index, query settings): the Unified framework's grid plus the inference-free encoder.
QUERY_SIDES = [
    ("splade", {}),
    ("q-noexp", {"expansion": False}),
    ("q-binary", {"weighting": False}),
    ("q-noexp-binary", {"expansion": False, "weighting": False}),
    ("idf", {"encoder": "idf"}),
]
DOC_SIDES = [("d-exp", True), ("d-noexp", False)]


def own_tokens_only(vectors: SparseVectors, texts: list[str], encoder: SpladeEncoder) -> SparseVectors:
    """Each document's weights on its own (non-special) word pieces, as the encoder read them
    (same cut and truncation): what ``SpladeEncoder(document_expansion=False)`` gives."""
    special = np.zeros(len(encoder.vocab), bool)
    special[list(encoder.tokenizer.all_special_ids)] = True
    cut = [t[: encoder.max_length * CHARS_PER_TOKEN] for t in texts]
    ids = encoder.tokenizer(cut, truncation=True, max_length=encoder.max_length)["input_ids"]
    rows, terms, weights = [], [], []
    for i, own in enumerate(ids):
        mine = np.zeros(len(encoder.vocab), bool)
        mine[own] = True
        mine &= ~special
        t, w = vectors.row(i)
        keep = mine[t]
        rows.append(int(keep.sum()))
        terms.append(t[keep])
        weights.append(w[keep])
    indptr = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
    return SparseVectors(indptr, np.concatenate(terms).astype(np.int32), np.concatenate(weights).astype(np.float32), vectors.vocab)


def build_indexes(name: str, encoder: SpladeEncoder) -> dict[str, Path]:
    """The two splade-tiny indexes of a collection (cached under ~/.cache/lsr/encoders)."""
    data = encoded_collection(name, encoder)
    out = {}
    for side, expansion in DOC_SIDES:
        path = cache_dir("encoders") / safe_name(name) / side
        if not (path / "manifest.json").is_file():
            vectors = data.docs
            if not expansion:
                texts = {d.id: d.contents for d in iter_corpus(resolve_dataset(name))}
                vectors = own_tokens_only(vectors, [texts[d] for d in data.doc_ids], encoder)
            settings = {**encoder.settings(), "document_expansion": expansion}
            SparseIndex.build(vectors, data.doc_ids, model="splade-tiny", encoder_settings=settings).save(path)
        out[side] = path
    return out


def run_dataset(name: str, encoder: SpladeEncoder, runs_dir: Path) -> list[dict[str, Any]]:
    collection = load_collection(name, judged_only=name == "cacm")
    indexes = build_indexes(name, encoder)
    specs = [SystemSpec(name="bm25", kind="lsr", model="bm25")]
    for side, _ in DOC_SIDES:
        for qname, query in QUERY_SIDES:
            specs.append(SystemSpec(name=f"{side}/{qname}", kind="index", index=str(indexes[side]), query=query))
    rows = []
    for spec in specs:
        report = evaluate_system(spec, collection, k=1000, cache_dir=cache_dir("encoders") / "bm25", runs_dir=runs_dir,
                                 log=lambda m: print(m, file=sys.stderr))
        eff = report["efficiency"]
        row = {"dataset": name, "system": spec.name, "query": spec.query, "nDCG@10": report["metrics"]["nDCG@10"],
               "R@1000": report["metrics"].get("R@1000"), "encode_ms_per_query": eff.get("encode_ms_per_query"),
               "search_ms_p50": eff.get("latency_ms_p50"), "search_ms_p99": eff.get("latency_ms_p99"),
               "run": report["run"]}
        if spec.kind == "index":
            from lsr.retrieval import Retriever

            retriever = Retriever.load(spec.index)
            row["doc_nnz_mean"] = retriever.index.info()["num_postings"] / retriever.num_docs
            qs = retriever.encode_queries([q.text for q in collection.queries], **{f"query_{k}": v for k, v in spec.query.items()})
            row["query_nnz_mean"] = float(np.diff(qs.indptr).mean())
        rows.append(row)
    return rows


def rest_latency(index: Path, dataset: str, n: int = 300) -> dict[str, Any]:
    """Client-side latency of POST /search on a real server (127.0.0.1), inference-free and
    SPLADE query paths interleaved query by query; bounded to ``n`` queries each."""
    import httpx

    from load_test import start_server, stop_server  # evaluation/load_test.py: a loopback server of its own

    texts = [q.text for q in load_collection(dataset).queries][:n]
    log = Path(cache_dir("encoders")) / "rest-server.log"
    proc, base = start_server(str(index), 1, log)
    try:
        times: dict[str, list[float]] = {"idf": [], "splade": []}
        with httpx.Client(base_url=base, timeout=30) as client:
            for text in texts[:20]:  # warm both paths
                for qe in times:
                    client.post("/search", json={"query": text, "k": 10, "query_encoder": qe}).raise_for_status()
            for text in texts:
                for qe in times:
                    t0 = time.perf_counter()
                    client.post("/search", json={"query": text, "k": 10, "query_encoder": qe}).raise_for_status()
                    times[qe].append((time.perf_counter() - t0) * 1e3)
    finally:
        stop_server(proc)
    return {qe: {"p50_ms": statistics.median(t), "p99_ms": float(np.percentile(t, 99)), "requests": len(t)} for qe, t in times.items()}


def encode_timing(index: Path, dataset: str, repeats: int = 5) -> dict[str, Any]:
    """Query encoding alone (Retriever.encode_queries, model loaded, warm): the median over
    ``repeats`` of the whole query set in one batch, per query, and of single queries one by one."""
    from lsr.retrieval import Retriever

    retriever = Retriever.load(index)
    texts = [q.text for q in load_collection(dataset).queries]
    out = {}
    for qe in ("idf", "model"):
        retriever.encode_queries(texts[:4], query_encoder=qe)
        batch, single = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            retriever.encode_queries(texts, query_encoder=qe)
            batch.append((time.perf_counter() - t0) * 1e3 / len(texts))
            t0 = time.perf_counter()
            for t in texts[:100]:
                retriever.encode_queries([t], query_encoder=qe)
            single.append((time.perf_counter() - t0) * 1e3 / 100)
        out[qe] = {"batch_ms_per_query": statistics.median(batch), "single_ms_per_query": statistics.median(single)}
    return out


def markdown(rows: list[dict[str, Any]], rest: dict[str, Any] | None, command: str, timing: dict[str, Any] | None = None) -> str:
    lines = [
        "# Encoders: inference-free queries and the Unified framework's toggles (splade-tiny)", "",
        f"Generated by `{command}` (git `{git_commit() or '?'}`). Do not edit by hand.", "",
        "Systems: `d-exp` = documents as splade-tiny encodes them, `d-noexp` = documents keep only their own word pieces "
        "(`--no-document-expansion`); query side `splade` (full), `q-noexp` (`--no-query-expansion`), `q-binary` "
        "(`--no-query-weighting`), `idf` (`--query-encoder idf`: the query's distinct word pieces x the collection's IDF, no model call). "
        "Search latency: exact mode (block-max pruning), one thread, single pre-encoded queries, median; encoding: per query in one batch.", "",
        "## nDCG@10", "",
    ]
    datasets = [d for d in FULL_COLLECTIONS if any(r["dataset"] == d for r in rows)]
    systems = list(dict.fromkeys(r["system"] for r in rows))
    by = {(r["dataset"], r["system"]): r for r in rows}
    lines += ["| system | " + " | ".join(datasets) + " | mean |", "|---|" + "---:|" * (len(datasets) + 1)]
    for s in systems:
        vals = [by[(d, s)]["nDCG@10"] for d in datasets if (d, s) in by]
        lines.append(f"| {s} | " + " | ".join(f"{by[(d, s)]['nDCG@10']:.4f}" if (d, s) in by else "" for d in datasets)
                     + f" | {np.mean(vals):.4f} |")
    lines += ["", "## Latency (ms): query encoding per query + exact search p50", ""]
    lines += ["| system | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
    for s in systems:
        cells = []
        for d in datasets:
            r = by.get((d, s))
            cells.append("" if r is None else f"{r['encode_ms_per_query'] or 0:.2f} + {r['search_ms_p50']:.3f}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", "## Non-zeros: mean per document / per query", ""]
    lines += ["| system | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
    for s in systems:
        if s == "bm25":
            continue
        lines.append(f"| {s} | " + " | ".join(f"{by[(d, s)]['doc_nnz_mean']:.0f} / {by[(d, s)]['query_nnz_mean']:.1f}" for d in datasets if (d, s) in by) + " |")
    if ("scifact", "d-exp/idf") in by:
        gap = by[("scifact", "d-exp/idf")]["nDCG@10"] - by[("scifact", "d-exp/splade")]["nDCG@10"]
        enc = timing["idf"]["single_ms_per_query"] if timing else by[("scifact", "d-exp/idf")]["encode_ms_per_query"]
        lines += ["", "## Targets", "",
                  f"- Inference-free within 0.03 nDCG@10 of splade-tiny on SciFact: {gap:+.4f} ({'met' if gap >= -0.03 else 'missed'}).",
                  f"- Inference-free query encoding < 0.2 ms per query: {enc:.3f} ms ({'met' if enc < 0.2 else 'missed'}; "
                  + ("one query at a time, from the encoding-alone table below)." if timing else "in the harness batch above).")]
    if timing:
        lines += ["", "## Query encoding alone on SciFact (median of 5 runs; `--encode-timing`)", "",
                  "| query encoder | ms/query, 300 in one batch | ms/query, one at a time |", "|---|---:|---:|"]
        lines += [f"| {qe} | {v['batch_ms_per_query']:.3f} | {v['single_ms_per_query']:.3f} |" for qe, v in timing.items()]
    if rest:
        lines += ["", "## End-to-end REST latency on SciFact (POST /search, k=10, `lsr serve` on 127.0.0.1, sequential, interleaved)", "",
                  "| query encoder | p50 ms | p99 ms | requests |", "|---|---:|---:|---:|"]
        lines += [f"| {qe} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['requests']} |" for qe, v in rest.items()]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in FULL_COLLECTIONS if any(r["dataset"] == d for r in rows)]
    if not datasets:
        return
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.6), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        for r in (r for r in rows if r["dataset"] == d):
            total = (r["encode_ms_per_query"] or 0) + r["search_ms_p50"]
            ax.scatter(total, r["nDCG@10"], s=18)
            ax.annotate(r["system"], (total, r["nDCG@10"]), fontsize=6)
        ax.set_xscale("log")
        ax.set_title(d)
        ax.set_xlabel("encode + search ms / query")
    axes[0][0].set_ylabel("nDCG@10")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="*", default=list(FULL_COLLECTIONS))
    p.add_argument("--rest", action="store_true", help="also measure REST latency on SciFact")
    p.add_argument("--encode-timing", action="store_true", help="also time query encoding alone on SciFact (idf vs the model)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = SpladeEncoder("splade-tiny")
    command = "python evaluation/encoders.py " + " ".join(sys.argv[1:])
    # rows of an earlier results.json are kept unless re-run, and results are written after every
    # collection: the suite can run piecewise, and a failure loses one collection at most
    earlier = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    rows, rest, timing = earlier.get("rows", []), earlier.get("rest"), earlier.get("encode_timing")

    def save() -> None:
        (out / "results.json").write_text(json.dumps({"command": command, "git_commit": git_commit(), "rows": rows, "rest": rest,
                                                      "encode_timing": timing}, indent=2) + "\n")
        (out / "results.md").write_text(markdown(rows, rest, command, timing))
        plot(rows, out / "ndcg_latency.png")

    if args.encode_timing:
        timing = encode_timing(build_indexes("scifact", encoder)["d-exp"], "scifact")
        save()
    if args.rest:
        rest = rest_latency(build_indexes("scifact", encoder)["d-exp"], "scifact")
        save()
    for name in args.datasets:
        new = run_dataset(name, encoder, cache_dir("encoders") / "runs")
        rows = [r for r in rows if r["dataset"] != name] + new
        save()
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
