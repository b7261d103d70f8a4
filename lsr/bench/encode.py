"""Encoding speed: our SpladeEncoder against sentence-transformers' SparseEncoder.

Both systems load the same weights folder and encode the same texts with the same batch size,
truncation and torch threads, in one process and alternately (the order flips every round), so
load from other processes on a shared machine hits both alike and the ratio stays fair even
when the absolute docs/s are noisy. Their vectors are compared entry by entry.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from lsr.data import SparseVectors, load_corpus, resolve_dataset
from lsr.encoders.models import resolve_model
from lsr.encoders.splade import SpladeEncoder, machine_threads
from lsr.util import cpu_name

OURS = "lsr SpladeEncoder"
ST = "sentence-transformers SparseEncoder"


def run_encode_benchmark(
    dataset: str = "scifact",
    model: str = "splade-tiny",
    n_docs: int | None = 1000,
    batch_size: int = 32,
    max_length: int = 256,
    threads: int | None = None,
    repeats: int = 3,
    out_dir: str | Path = "evaluation/results/encode",
    warmup_docs: int = 128,
) -> dict[str, Any]:
    """Time both encoders ``repeats`` times each on the first ``n_docs`` documents of ``dataset``.

    A warm-up on the first ``warmup_docs`` texts (thread pools, allocator, lazy init) is not
    timed. Writes ``encode_<dataset>.json``, ``.md`` and ``.png`` into ``out_dir`` and returns
    the JSON report.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    docs = load_corpus(resolve_dataset(dataset))
    texts = [d.contents for d in docs[:n_docs]]
    threads = threads or machine_threads()
    ours = SpladeEncoder(model, max_length=max_length, batch_size=batch_size, threads=threads)
    st = _st_splade(resolve_model(model), max_length)
    systems: dict[str, Callable[[list[str]], Any]] = {
        OURS: lambda t: ours.encode_documents(t, show_progress_bar=False),
        ST: lambda t: st.encode_document(t, batch_size=batch_size, show_progress_bar=False),
    }
    torch.set_num_threads(threads)
    for encode in systems.values():
        encode(texts[:warmup_docs])
    seconds: dict[str, list[float]] = {name: [] for name in systems}
    outputs: dict[str, Any] = {}
    for r in range(repeats):
        for name in list(systems) if r % 2 == 0 else list(systems)[::-1]:
            torch.set_num_threads(threads)
            start = time.perf_counter()
            outputs[name] = systems[name](texts)
            seconds[name].append(time.perf_counter() - start)
            assert torch.get_num_threads() == threads, "an encoder changed the torch thread count"

    blank = np.array([not t.strip() for t in texts])  # ours leaves these empty by design
    ours_m, st_m = _csr(outputs[OURS]), _csr_from_torch(outputs[ST])
    diff = abs(ours_m[~blank] - st_m[~blank])
    lengths = [len(ids) for ids in ours.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    result: dict[str, Any] = {
        "dataset": dataset,
        "n_docs": len(texts),
        "settings": {
            "model": model,
            "weights": str(resolve_model(model)),
            "batch_size": batch_size,
            "max_length": max_length,
            "torch_threads": threads,
            "repeats": repeats,
            "warmup_docs": min(warmup_docs, len(texts)),
            "mean_tokens_per_doc": float(np.mean(lengths)) if lengths else 0.0,
            "st_modules": [repr(m) for m in st],
        },
        "machine": _machine(),
        "systems": {name: _summary(len(texts), s) for name, s in seconds.items()},
        "speed_ratio": float(statistics.median(seconds[ST]) / statistics.median(seconds[OURS])),
        "paired_ratios": [float(b / a) for a, b in zip(seconds[OURS], seconds[ST])],
        "max_abs_diff": float(diff.max()) if diff.nnz else 0.0,
        "mean_nnz_per_doc": {OURS: ours_m[~blank].nnz / max(1, int((~blank).sum())), ST: st_m[~blank].nnz / max(1, int((~blank).sum()))},
        "blank_docs_excluded_from_diff": int(blank.sum()),
        "note": "both systems run in one process, alternately (order flipped each round); warm-up not timed",
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result["files"] = {k: str(out / f"encode_{Path(dataset).name}.{k}") for k in ("json", "md", "png")}
    Path(result["files"]["json"]).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    Path(result["files"]["md"]).write_text(markdown(result), encoding="utf-8")
    plot(result, result["files"]["png"])
    return result


def _st_splade(folder: str, max_length: int):
    """SPLADE-max spelled out module by module instead of relying on ST's auto-detection of
    masked-LM folders, so pooling (max), activation (log1p(relu)) and truncation are pinned."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    transformer = Transformer(folder, transformer_task="fill-mask", max_seq_length=max_length)
    st = SparseEncoder(modules=[transformer, SpladePooling(pooling_strategy="max", activation_function="relu")], device="cpu")
    if st.max_seq_length != max_length or st.max_active_dims is not None:
        raise RuntimeError(f"sentence-transformers did not take max_length={max_length} / no top-k pruning")
    return st


def _csr(v: SparseVectors) -> sp.csr_matrix:
    return sp.csr_matrix((v.values, v.indices, v.indptr), shape=(len(v), len(v.vocab)))


def _csr_from_torch(t: torch.Tensor) -> sp.csr_matrix:
    t = t.coalesce()
    rows, cols = t.indices().numpy()
    return sp.csr_matrix((t.values().numpy(), (rows, cols)), shape=tuple(t.shape))


def _summary(n: int, seconds: list[float]) -> dict[str, Any]:
    rates = [n / s for s in seconds]
    return {"seconds": seconds, "docs_per_s": rates, "median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def _machine() -> dict[str, Any]:
    import sentence_transformers
    import transformers

    return {
        "cores": machine_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }


def markdown(result: dict[str, Any]) -> str:
    s, m, sys_ = result["settings"], result["machine"], result["systems"]
    rows = [
        f"# Encoding speed: {result['dataset']}, {result['n_docs']} documents",
        "",
        "| system | docs/s (median) | min | max | ratio | max abs diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in sys_.items():
        ratio = r["median"] / sys_[ST]["median"]
        rows.append(f"| {name} | {r['median']:.1f} | {r['min']:.1f} | {r['max']:.1f} | {ratio:.2f}x | "
                    + (f"{result['max_abs_diff']:.2e} |" if name == OURS else "(reference) |"))
    paired = ", ".join(f"{x:.2f}" for x in result["paired_ratios"])
    rows += [
        "",
        f"Ratio = median docs/s over median docs/s of sentence-transformers; per round: {paired}. "
        f"Max abs diff is over all {result['n_docs'] - result['blank_docs_excluded_from_diff']} non-blank documents x the vocabulary.",
        "",
        f"Both systems run in one process, alternately ({s['repeats']} timed runs each, order flipped every round, "
        f"after an untimed warm-up on {s['warmup_docs']} texts), so load from other processes on this shared machine "
        "hits both alike: the absolute docs/s are noisy, the ratio is the fair comparison.",
        "",
        f"Settings: model `{s['model']}`, batch size {s['batch_size']}, max length {s['max_length']} tokens "
        f"(mean {s['mean_tokens_per_doc']:.0f} per document), {s['torch_threads']} torch threads, SPLADE-max with log1p(relu) on both sides.",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), torch {m['torch']}, transformers {m['transformers']}, "
        f"sentence-transformers {m['sentence_transformers']}, Python {m['python']}.",
        "",
    ]
    return "\n".join(rows)


def plot(result: dict[str, Any], path: str | Path) -> None:
    """Median docs/s per system, with whiskers spanning min to max over the repeats."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    names = list(result["systems"])
    med = [result["systems"][n]["median"] for n in names]
    err = [[m - result["systems"][n]["min"] for n, m in zip(names, med)], [result["systems"][n]["max"] - m for n, m in zip(names, med)]]
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    ax.bar(range(len(names)), med, yerr=err, capsize=6, color=["tab:blue", "tab:gray"])
    ax.set_xticks(range(len(names)), [n.replace(" ", "\n", 1) for n in names])
    ax.set_ylabel("documents / s")
    s = result["settings"]
    ax.set_title(f"{result['dataset']}: {result['n_docs']} docs, {s['torch_threads']} threads, "
                 f"{result['speed_ratio']:.2f}x", fontsize=10)
    for i, m in enumerate(med):
        ax.annotate(f"{m:.1f}", (i, m), textcoords="offset points", xytext=(12, 3), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
