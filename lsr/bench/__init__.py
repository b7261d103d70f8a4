"""Benchmarks: side-by-side measurements against the anchor engines, written under evaluation/results/."""
