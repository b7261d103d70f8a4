"""Benchmarks: side-by-side measurements against the anchor engines, written under evaluation/results/."""

# The workloads of `lsr bench exact` (lsr.bench.exact), here so the CLI lists them without importing it.
EXACT_WORKLOADS = ("splade-real", "splade-synth", "splade-gcide", "bm25-gcide")
