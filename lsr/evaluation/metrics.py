"""Retrieval metrics with trec_eval semantics, computed through ir-measures.

Conventions (those of ``trec_eval -c`` and BEIR):

* the queries scored are the judged ones (at least one qrels line) among the topics searched;
  a judged query the run has no results for scores 0; run queries without judgments are not
  scored (and are counted in :attr:`Evaluation.unjudged_in_run`);
* relevance <= 0 is non-relevant; nDCG uses the graded relevance as gain, Recall and RR count
  documents with relevance >= ``relevance_level`` (1, or 2 for TREC DL);
* ties in score are broken as trec_eval breaks them (document id, descending);
* ``ignore_identical_ids`` drops a retrieved document whose id is the query's id (BEIR, for
  ArguAna and Quora);
* nDCG@k and R@k are trec_eval's ``ndcg_cut.k`` and ``recall.k`` (pytrec_eval); RR@k is
  trec_eval's ``recip_rank`` over each ranking cut at k (``trec_eval -M k``, how MS MARCO's
  MRR@10 is computed with trec_eval); Judged@k is the fraction of the top k that is judged.

Metrics are never averaged over zero queries: that raises :class:`~lsr.errors.DataError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lsr.data import Qrels, Run
from lsr.errors import DataError

DEFAULT_METRICS = ("nDCG@10", "RR@10", "R@100", "R@1000", "Judged@10")

_NAMES = {
    "ndcg": "nDCG",
    "rr": "RR",
    "mrr": "RR",
    "r": "R",
    "recall": "R",
    "judged": "Judged",
    "p": "P",
    "precision": "P",
    "ap": "AP",
    "map": "AP",
}


@dataclass(frozen=True)
class Metric:
    """A parsed metric name: ``family@cutoff`` (cutoff ``None`` for the whole ranking)."""

    family: str  # nDCG | RR | R | Judged | P | AP
    cutoff: int | None

    @property
    def name(self) -> str:
        return self.family if self.cutoff is None else f"{self.family}@{self.cutoff}"


def parse_metric(name: str) -> Metric:
    """``nDCG@10``, ``MRR@10``/``RR@10``, ``Recall@100``/``R@100``, ``judged@10``, ``P@5``, ``MAP``..."""
    m = re.fullmatch(r"\s*([A-Za-z]+)\s*(?:@\s*(\d+))?\s*", str(name))
    family = _NAMES.get(m.group(1).lower()) if m else None
    if family is None:
        raise ValueError(f"unknown metric {name!r}; use e.g. {', '.join(DEFAULT_METRICS)}, P@5 or MAP")
    cutoff = int(m.group(2)) if m.group(2) else None
    if cutoff is not None and cutoff <= 0:
        raise ValueError(f"metric cutoff must be positive, got {name!r}")
    if family in ("R", "P", "Judged") and cutoff is None:
        raise ValueError(f"{family} needs a cutoff, e.g. {family}@100")
    return Metric(family, cutoff)


@dataclass
class Evaluation:
    """Mean scores over the scored queries, the per-query values, and what was left out."""

    scores: dict[str, float]
    per_query: dict[str, dict[str, float]]
    num_queries: int
    missing_from_run: int = 0  # judged queries the run has no results for (scored 0)
    unjudged_in_run: int = 0  # run queries without judgments (not scored)
    removed_identical: int = 0  # hits dropped by ignore_identical_ids
    without_relevant: int = 0  # scored queries with no relevant document in the qrels
    notes: list[str] = field(default_factory=list)

    def to_dict(self, per_query: bool = False) -> dict[str, Any]:
        out = {
            "scores": self.scores,
            "num_queries": self.num_queries,
            "missing_from_run": self.missing_from_run,
            "unjudged_in_run": self.unjudged_in_run,
            "removed_identical": self.removed_identical,
            "without_relevant": self.without_relevant,
            "notes": self.notes,
        }
        if per_query:
            out["per_query"] = self.per_query
        return out


def trec_eval_order(docs: Mapping[str, float]) -> list[tuple[str, float]]:
    """A query's hits in trec_eval's order: score descending, then document id descending."""
    return sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Qrels | Mapping[str, Mapping[str, int]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    query_ids: Iterable[str] | None = None,
    relevance_level: int = 1,
    ignore_identical_ids: bool = False,
    strict: bool = False,
) -> Evaluation:
    """Score ``run`` against ``qrels``.

    ``query_ids`` are the topics that were searched (default: every judged query, as
    ``trec_eval -c``); only judged ones among them are scored. With ``strict``, a run query
    that has no judgments is an error instead of a note.
    """
    import ir_measures

    parsed = [parse_metric(m) for m in metrics]
    if not parsed:
        raise ValueError("no metrics requested")
    judgments = qrels.judgments if isinstance(qrels, Qrels) else {q: dict(d) for q, d in qrels.items()}
    source = qrels.source if isinstance(qrels, Qrels) else "qrels"
    judged = {q for q, docs in judgments.items() if docs}
    if not judged:
        raise DataError(f"{source}: no judged queries, nothing to score")
    if query_ids is None:
        scored = sorted(judged)
    else:
        topics = list(dict.fromkeys(str(q) for q in query_ids))
        scored = [q for q in topics if q in judged]
        if not scored:
            raise DataError(
                f"none of the {len(topics)} queries searched has judgments in {source} "
                f"(queries {_sample(topics)}; judged {_sample(sorted(judged))}): wrong qrels file or split?"
            )
    scored_set = set(scored)
    unknown = [q for q in run if q not in judged]
    if run and len(unknown) == len(run):
        raise DataError(
            f"none of the run's {len(run)} query ids has judgments in {source} "
            f"(run {_sample(list(run))}; judged {_sample(sorted(judged))}): wrong qrels file or split?"
        )
    if unknown and strict:
        raise DataError(f"{len(unknown)} run queries have no judgments in {source}: {_sample(unknown)}")

    removed = 0
    cleaned: dict[str, dict[str, float]] = {}
    for q in scored:
        docs = run.get(q)
        if not docs:
            continue
        if ignore_identical_ids and q in docs:
            docs = {d: s for d, s in docs.items() if d != q}
            removed += 1
        cleaned[q] = {str(d): float(s) for d, s in docs.items()}

    level = int(relevance_level)
    gains = {q: {d: max(int(r), 0) for d, r in judgments[q].items()} for q in scored}
    all_judged = {q: {d: int(r) for d, r in judgments[q].items()} for q in scored}

    per_query: dict[str, dict[str, float]] = {q: {} for q in scored}
    by_provider: dict[tuple[str, int | None], list[tuple[Metric, Any]]] = {}
    for m in parsed:
        if m.family == "nDCG":
            key, measure = ("trec", None), ir_measures.nDCG if m.cutoff is None else ir_measures.nDCG @ m.cutoff
        elif m.family == "R":
            key, measure = ("trec", None), ir_measures.R(rel=level) @ m.cutoff
        elif m.family == "P":
            key, measure = ("trec", None), ir_measures.P(rel=level) @ m.cutoff
        elif m.family == "AP":
            key, measure = ("trec", None), ir_measures.AP(rel=level) if m.cutoff is None else ir_measures.AP(rel=level) @ m.cutoff
        elif m.family == "RR":
            key, measure = ("trec", m.cutoff), ir_measures.RR(rel=level)
        else:  # Judged
            key, measure = ("judged", m.cutoff), ir_measures.Judged @ m.cutoff
        by_provider.setdefault(key, []).append((m, measure))

    for (provider_name, cut), items in by_provider.items():
        provider = ir_measures.pytrec_eval if provider_name == "trec" else ir_measures.judged
        this_run = cleaned if cut is None else {q: dict(trec_eval_order(d)[:cut]) for q, d in cleaned.items()}
        this_qrels = gains if provider_name == "trec" else all_judged
        evaluator = provider.evaluator([measure for _, measure in items], this_qrels)
        names = {str(measure): m.name for m, measure in items}
        for result in evaluator.iter_calc(this_run):
            if result.query_id in scored_set:
                per_query[result.query_id][names[str(result.measure)]] = float(result.value)
    for q in scored:  # trec_eval -c: a judged query missing from the run counts as 0
        for m in parsed:
            per_query[q].setdefault(m.name, 0.0)

    n = len(scored)
    scores = {m.name: sum(per_query[q][m.name] for q in scored) / n for m in parsed}
    without_relevant = sum(1 for q in scored if not any(r >= level for r in judgments[q].values()))
    missing = sum(1 for q in scored if q not in cleaned)
    notes = []
    if missing:
        notes.append(f"{missing} of {n} judged queries have no results in the run (scored 0)")
    if unknown:
        notes.append(f"{len(unknown)} run queries have no judgments and are not scored: {_sample(unknown)}")
    if without_relevant:
        notes.append(f"{without_relevant} scored queries have no document of relevance >= {level}")
    depth = max((len(d) for d in cleaned.values()), default=0)
    shallow = [m.name for m in parsed if m.cutoff is not None and m.cutoff > depth]
    if cleaned and shallow:
        notes.append(f"warning: the run holds at most {depth} hits per query, fewer than the cutoff of {', '.join(shallow)}: "
                     f"{'those are' if len(shallow) > 1 else 'it is'} lower than a deep enough run would score (search with -k 1000)")
    if removed:
        notes.append(f"ignore_identical_ids: dropped the query's own id from {removed} queries' hits")
    return Evaluation(
        scores=scores,
        per_query=per_query,
        num_queries=n,
        missing_from_run=missing,
        unjudged_in_run=len(unknown),
        removed_identical=removed,
        without_relevant=without_relevant,
        notes=notes,
    )


def recall_against(run: Run, reference: Run, k: int) -> float:
    """Mean over the reference's queries of |top-k(run) ∩ top-k(reference)| / |top-k(reference)|.

    How much of the exact top k an approximate search finds (1.0 for the exact search itself).
    """
    total, n = 0.0, 0
    for q, ref_docs in reference.items():
        want = {d for d, _ in trec_eval_order(ref_docs)[:k]}
        if not want:
            continue
        got = {d for d, _ in trec_eval_order(run.get(q, {}))[:k]}
        total += len(want & got) / len(want)
        n += 1
    if n == 0:
        raise DataError("the reference run has no results: recall against it is undefined")
    return total / n


def _sample(ids: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:n])
    return f"{shown}, ... ({len(ids)} in all)" if len(ids) > n else shown
