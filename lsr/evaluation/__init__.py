"""Evaluation: trec_eval-equal metrics, runs, efficiency figures and the BEIR suite runner."""

from lsr.evaluation.metrics import DEFAULT_METRICS, Evaluation, evaluate, parse_metric, recall_against

__all__ = ["DEFAULT_METRICS", "Evaluation", "evaluate", "parse_metric", "recall_against"]
