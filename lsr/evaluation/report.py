"""Tables (markdown) and the recall-latency plot from evaluation reports."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

EFFICIENCY_COLUMNS = (
    ("encode ms/q", "encode_ms_per_query", "{:.2f}"),
    ("p50 ms", "latency_ms_p50", "{:.2f}"),
    ("p99 ms", "latency_ms_p99", "{:.2f}"),
    ("QPS", "qps", "{:,.0f}"),
    ("index MB", "index_bytes", "mb"),
    ("build s", "build_seconds", "{:,.1f}"),
    ("recall vs exact", "recall_vs_exact", "{:.3f}"),
    ("dense scored", "dense_fraction", "{:.1%}"),
)


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if spec == "mb":
        return f"{value / 1e6:,.1f}"
    return spec.format(value)


def quality_table(reports: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    head = "| dataset | system | " + " | ".join(metrics) + " | queries scored |"
    sep = "|---|---|" + "---:|" * len(metrics) + "---:|"
    rows = [head, sep]
    for r in reports:
        cells = [f"{r['metrics'][m]:.4f}" if m in r["metrics"] else "–" for m in metrics]
        rows.append(f"| {r['dataset']['name']} | {r['system']['name']} | " + " | ".join(cells) + f" | {r['evaluation']['num_queries']} |")
    return "\n".join(rows)


def efficiency_table(reports: Sequence[Mapping[str, Any]]) -> str:
    head = "| dataset | system | " + " | ".join(c[0] for c in EFFICIENCY_COLUMNS) + " | threads |"
    sep = "|---|---|" + "---:|" * len(EFFICIENCY_COLUMNS) + "---:|"
    rows = [head, sep]
    for r in reports:
        eff = r.get("efficiency", {})
        cells = [_fmt(eff.get(key), spec) for _, key, spec in EFFICIENCY_COLUMNS]
        rows.append(f"| {r['dataset']['name']} | {r['system']['name']} | " + " | ".join(cells) + f" | {eff.get('threads', '–')} |")
    return "\n".join(rows)


def plot_recall_latency(reports: Sequence[Mapping[str, Any]], path: str | Path, *, quality_metric: str = "nDCG@10") -> Path | None:
    """Two panels per system and dataset: recall against exact vs p50 latency, and quality vs latency.

    Returns None (and writes nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    points = [r for r in reports if r.get("efficiency", {}).get("latency_ms_p50")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    datasets = list(dict.fromkeys(r["dataset"]["name"] for r in points))
    systems = list(dict.fromkeys(r["system"]["name"] for r in points))
    colors = plt.get_cmap("tab10")
    markers = "osD^v<>pP*X"
    for r in points:
        eff = r["efficiency"]
        c = colors(datasets.index(r["dataset"]["name"]) % 10)
        mk = markers[systems.index(r["system"]["name"]) % len(markers)]
        x = eff["latency_ms_p50"]
        axes[0].scatter(x, eff.get("recall_vs_exact") or 0.0, color=c, marker=mk, s=50)
        axes[1].scatter(x, r["metrics"].get(quality_metric, 0.0), color=c, marker=mk, s=50)
    for ax, ylabel in ((axes[0], "recall@k against exact search"), (axes[1], quality_metric)):
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency per query (ms, one thread)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylim(0, 1.05)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors(i % 10), marker="o", linestyle="", label=d) for i, d in enumerate(datasets)]
    handles += [Line2D([], [], color="grey", marker=markers[i % len(markers)], linestyle="", label=s) for i, s in enumerate(systems)]
    fig.legend(handles=handles, loc="center right", fontsize=8)
    fig.suptitle("Recall and quality against latency (exact modes sit at recall 1.0)")
    fig.tight_layout(rect=(0, 0, 0.85, 0.95))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
