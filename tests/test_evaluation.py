"""The evaluation harness: metric values computed by hand, trec_eval conventions, bad input, CLI and suite."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from lsr.data import Qrels, read_run, write_qrels, write_run
from lsr.errors import DataError
from lsr.cli import main as lsr_main
from lsr.evaluation.metrics import evaluate, parse_metric, recall_against, trec_eval_order
from lsr.retrieval import Retriever

from conftest import shared_dataset

PROJECT_ROOT = Path(__file__).resolve().parents[1]

QRELS = {
    "q1": {"d1": 2, "d2": 1, "d3": 0},
    "q2": {"d4": 1},
    "q3": {"d5": -1},  # judged, nothing relevant
}
RUN = {
    "q1": {"d3": 3.0, "d1": 2.0, "d9": 1.0, "d2": 0.5},
    "q2": {"d8": 1.0, "d4": 0.9},
    "q3": {"d5": 1.0},
    "q4": {"d1": 1.0},  # unjudged: not scored
}


def test_metrics_by_hand():
    e = evaluate(RUN, QRELS, ["nDCG@10", "RR@10", "R@100", "Judged@10", "P@2"])
    # q1: gains (0, 2, 0, 1): DCG = 2/log2(3) + 1/log2(5); ideal (2, 1): 2 + 1/log2(3)
    ndcg_q1 = (2 / math.log2(3) + 1 / math.log2(5)) / (2 + 1 / math.log2(3))
    ndcg_q2 = (1 / math.log2(3)) / 1.0
    assert e.per_query["q1"]["nDCG@10"] == pytest.approx(ndcg_q1, abs=1e-9)
    assert e.scores["nDCG@10"] == pytest.approx((ndcg_q1 + ndcg_q2 + 0.0) / 3, abs=1e-9)
    assert e.scores["RR@10"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert e.scores["R@100"] == pytest.approx((1.0 + 1.0 + 0.0) / 3)
    assert e.scores["Judged@10"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 1) / 3)  # judged share of what was retrieved
    assert e.scores["P@2"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert (e.num_queries, e.unjudged_in_run, e.without_relevant, e.missing_from_run) == (3, 1, 1, 0)
    assert any("no judgments" in n for n in e.notes)


def test_cutoffs_and_missing_queries():
    run = {"q1": {"d3": 3.0, "d1": 2.0}}  # q2, q3 missing: scored 0 (trec_eval -c)
    e = evaluate(run, QRELS, ["RR@1", "RR@10", "nDCG@1", "R@1"])
    assert e.scores == pytest.approx({"RR@1": 0.0, "RR@10": 0.5 / 3, "nDCG@1": 0.0, "R@1": 0.0})
    assert e.missing_from_run == 2 and any("no results" in n for n in e.notes)
    only = evaluate(run, QRELS, ["RR@10"], query_ids=["q1", "q4"])  # only the topics searched are scored
    assert only.num_queries == 1 and only.scores["RR@10"] == 0.5


def test_ties_broken_as_trec_eval():
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 1.0, "b": 1.0}}  # equal scores: trec_eval puts 'b' (docno descending) first
    assert [d for d, _ in trec_eval_order(run["q"])] == ["b", "a"]
    e = evaluate(run, qrels, ["RR@10", "RR@1", "nDCG@1"])
    assert e.scores == {"RR@10": 0.5, "RR@1": 0.0, "nDCG@1": 0.0}


def test_relevance_level_and_negative_grades():
    qrels = {"q": {"a": 1, "b": 2, "c": -1}}
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    e1 = evaluate(run, qrels, ["RR@10", "R@100", "nDCG@10"])
    e2 = evaluate(run, qrels, ["RR@10", "R@100", "nDCG@10"], relevance_level=2)
    assert (e1.scores["RR@10"], e2.scores["RR@10"]) == (1.0, 0.5)
    assert (e1.scores["R@100"], e2.scores["R@100"]) == (1.0, 1.0)
    ideal = 2 + 1 / math.log2(3)
    assert e1.scores["nDCG@10"] == pytest.approx((1 + 2 / math.log2(3)) / ideal)  # c's -1 is gain 0, not negative
    assert e1.scores["nDCG@10"] == e2.scores["nDCG@10"]


def test_ignore_identical_ids():
    qrels = {"q1": {"d1": 1}}
    run = {"q1": {"q1": 5.0, "d1": 1.0}}
    assert evaluate(run, qrels, ["RR@10"]).scores["RR@10"] == 0.5
    e = evaluate(run, qrels, ["RR@10"], ignore_identical_ids=True)
    assert e.scores["RR@10"] == 1.0 and e.removed_identical == 1


def test_recall_against_exact():
    exact = {"q": {f"d{i}": 10.0 - i for i in range(10)}}
    approx = {"q": {f"d{i}": 10.0 - i for i in range(5)} | {"x": 0.1}}
    assert recall_against(exact, exact, 10) == 1.0
    assert recall_against(approx, exact, 10) == 0.5
    with pytest.raises(DataError):
        recall_against(approx, {}, 10)


def test_metric_names():
    assert parse_metric("MRR@10").name == "RR@10"
    assert parse_metric("Recall@1000").name == "R@1000"
    assert parse_metric("judged@10").name == "Judged@10"
    assert parse_metric("ndcg@10").name == "nDCG@10"
    assert parse_metric("MAP").name == "AP"
    for bad in ("BLEU@4", "R", "nDCG@0", "nDCG@x"):
        with pytest.raises(ValueError):
            parse_metric(bad)


def test_never_scores_zero_queries():
    with pytest.raises(DataError, match="no judged queries"):
        evaluate({"q1": {"d": 1.0}}, {}, ["nDCG@10"])
    with pytest.raises(DataError, match="no judged queries"):
        evaluate({"q1": {"d": 1.0}}, Qrels({"q1": {}}, "x.tsv"), ["nDCG@10"])
    with pytest.raises(DataError, match="none of the run's 2 query ids has judgments"):
        evaluate({"x1": {"d": 1.0}, "x2": {"d": 1.0}}, QRELS, ["nDCG@10"])
    with pytest.raises(DataError, match="none of the 2 queries searched has judgments"):
        evaluate(RUN, QRELS, ["nDCG@10"], query_ids=["x", "y"])
    with pytest.raises(DataError, match="1 run queries have no judgments"):
        evaluate(RUN, QRELS, ["nDCG@10"], strict=True)


# ---- the CLI and the suite on ADI (82 documents) --------------------------------------------
@pytest.fixture
def dirs(tmp_path: Path) -> list[str]:
    return ["--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs")]


def test_cli_bm25_end_to_end(adi: Path, dirs, tmp_path: Path, capsys):
    out = tmp_path / "report.json"
    assert lsr_main(["evaluate", "--dataset", str(adi), "--model", "bm25", "--output", str(out), *dirs]) == 0
    report = json.loads(out.read_text())
    assert report["metrics"]["nDCG@10"] > 0.3 and report["evaluation"]["num_queries"] == 35
    assert set(report["metrics"]) == {"nDCG@10", "RR@10", "R@100", "R@1000", "Judged@10"}
    eff = report["efficiency"]
    for key in ("encode_ms_per_query", "latency_ms_p50", "latency_ms_p99", "qps", "index_bytes", "build_seconds"):
        assert eff[key] is not None and eff[key] > 0, key
    run_file = tmp_path / "runs" / "adi" / "bm25.trec"
    description = json.loads(Path(str(run_file) + ".json").read_text())
    assert description["system"]["model"] == "bm25" and description["system"]["index"]["encoder"]["k1"] == 0.9
    assert description["dataset"]["qrels_lines"] == 170
    printed = capsys.readouterr()
    assert "nDCG@10" in printed.out and "building the index" in printed.err
    # Scoring the saved run gives the same numbers; a second run reuses the cached index.
    assert lsr_main(["evaluate", "--dataset", str(adi), "--run", str(run_file), "--output", str(tmp_path / "r2.json")]) == 0
    assert json.loads((tmp_path / "r2.json").read_text())["metrics"] == report["metrics"]
    assert lsr_main(["evaluate", "--dataset", str(adi), "--model", "bm25", "--no-efficiency", "--output", str(out), *dirs]) == 0
    assert json.loads(out.read_text())["metrics"] == report["metrics"]
    assert "building the index" not in capsys.readouterr().err  # the cached collection was reused
    # a prebuilt collection (--index): same metrics, and the build facts its segment records
    [cached] = [p for p in (tmp_path / "cache" / "adi").iterdir() if p.is_dir()]  # one build: named bm25-<digest of its settings>
    assert cached.name.startswith("bm25-") and (cached / "collection.json").is_file()
    assert lsr_main(["evaluate", "--dataset", str(adi), "--index", str(cached), "--output", str(out), *dirs]) == 0
    prebuilt = json.loads(out.read_text())
    assert prebuilt["metrics"] == report["metrics"] and prebuilt["system"]["model"] == "bm25"
    stats = Retriever.load(cached).index.manifest["stats"]
    assert prebuilt["efficiency"]["build_seconds"] == stats["build_seconds"] is not None
    assert prebuilt["efficiency"]["encode_corpus_seconds"] == stats["encode_seconds"] is not None


def test_cli_approx_and_exhaustive_modes(adi: Path, dirs, tmp_path: Path, capsys):
    """Every sparse mode evaluates; the non-exact ones also report their recall against exact search."""
    reports = {}
    for mode in ("exact", "exhaustive", "approx"):
        out = tmp_path / f"{mode}.json"
        assert lsr_main(["evaluate", "--dataset", str(adi), "--model", "bm25", "--mode", mode, "--name", f"bm25-{mode}",
                         "--output", str(out), *dirs]) == 0
        printed = capsys.readouterr().out
        assert "nDCG@10" in printed and "recall_vs_exact" in printed
        reports[mode] = json.loads(out.read_text())
    for mode, report in reports.items():
        assert set(report["metrics"]) == {"nDCG@10", "RR@10", "R@100", "R@1000", "Judged@10"}, mode
        assert report["system"]["mode"] == mode and report["evaluation"]["num_queries"] == 35
        assert report["efficiency"]["latency_ms_p50"] > 0 and report["efficiency"]["qps"] > 0
    assert reports["exact"]["efficiency"]["recall_vs_exact"] == 1.0
    # exhaustive scoring is the reference exact search equals: same run, same metrics
    assert reports["exhaustive"]["efficiency"]["recall_vs_exact"] == 1.0
    assert reports["exhaustive"]["efficiency"]["recall_vs_exact_k"] == 10
    assert reports["exhaustive"]["metrics"] == reports["exact"]["metrics"]
    runs = tmp_path / "runs" / "adi"
    assert read_run(runs / "bm25-exhaustive.trec") == read_run(runs / "bm25-exact.trec")
    # approx: its own index with the approx structure; exact and exhaustive share one without it
    approx = reports["approx"]
    assert 0.5 < approx["efficiency"]["recall_vs_exact"] <= 1.0 and approx["efficiency"]["recall_vs_exact_k"] == 10
    assert approx["metrics"]["nDCG@10"] > 0.3
    cached = PROJECT_ROOT / approx["system"]["index"]["path"] if not Path(approx["system"]["index"]["path"]).is_absolute() else Path(approx["system"]["index"]["path"])
    assert (cached / "collection.json").is_file() and "approx" in Retriever.load(cached).segments.parts
    paths = {m: reports[m]["system"]["index"]["path"] for m in ("exact", "exhaustive", "approx")}
    assert paths["exact"] == paths["exhaustive"] != paths["approx"]
    assert sorted(p.name for p in (tmp_path / "cache" / "adi").iterdir() if p.is_dir()) == sorted({Path(v).name for v in paths.values()})
    # knobs reach the search, and are checked against the mode's
    out = tmp_path / "knobs.json"
    assert lsr_main(["evaluate", "--dataset", str(adi), "--model", "bm25", "--mode", "approx", "--name", "bm25-approx",
                     "--knob", "query_cut=1", "--knob", "heap_factor=1", "--no-efficiency", "--output", str(out), *dirs]) == 0
    narrow = json.loads(out.read_text())
    assert narrow["system"]["knobs"] == {"query_cut": 1, "heap_factor": 1}
    assert narrow["efficiency"]["recall_vs_exact"] < approx["efficiency"]["recall_vs_exact"]
    capsys.readouterr()
    assert lsr_main(["evaluate", "--dataset", str(adi), "--model", "bm25", "--mode", "approx", "--name", "bm25-approx",
                     "--knob", "heap_factor=2", *dirs]) == 2
    assert "lsr: error: heap_factor must be in [0, 1], got 2" in capsys.readouterr().err
    assert lsr_main(["evaluate", "--dataset", str(adi), "--model", "bm25", "--mode", "exhaustive", "--name", "bm25-exhaustive",
                     "--knob", "alpha=0.5", *dirs]) == 2
    assert "lsr: error: mode 'exhaustive' has no knob 'alpha' (its knobs: beta)" in capsys.readouterr().err


def test_cli_unknown_mode_lists_the_modes(adi: Path, dirs, capsys):
    from lsr.retrieval.modes import MODES

    with pytest.raises(SystemExit) as exit_:
        lsr_main(["evaluate", "--dataset", str(adi), "--model", "bm25", "--mode", "fast", *dirs])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --mode: invalid choice: 'fast'" in err
    listed = err[err.index("choose from"):]
    assert all(repr(m) in listed or f" {m}" in listed for m in MODES), err
    # a dense mode needs a dense part, which a bm25 system lacks: said before anything is built
    assert lsr_main(["evaluate", "--dataset", str(adi), "--model", "bm25", "--mode", "hybrid", *dirs]) == 2
    assert "mode 'hybrid' needs a dense part: give params.dense" in capsys.readouterr().err


def test_cli_bad_input(adi: Path, dirs, tmp_path: Path, capsys):
    assert lsr_main(["evaluate", "--dataset", str(adi), "--model", "bm25", "--qrels", str(tmp_path / "none.tsv"), *dirs]) == 2
    assert "no qrels file" in capsys.readouterr().err
    run = tmp_path / "alien.trec"
    write_run(run, {"x1": {"1": 1.0}, "x2": {"2": 1.0}})
    assert lsr_main(["evaluate", "--dataset", str(adi), "--run", str(run)]) == 2
    assert "none of the run's 2 query ids has judgments" in capsys.readouterr().err
    assert lsr_main(["evaluate", "--dataset", str(adi), "--run", str(run), "--metrics", "BLEU"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    # qrels judging none of the collection's queries
    qrels = tmp_path / "other.tsv"
    write_qrels(qrels, {"zzz": {"1": 1}})
    assert lsr_main(["evaluate", "--dataset", str(adi), "--model", "bm25", "--qrels", str(qrels), *dirs]) == 2
    assert "none of its 35 queries has judgments" in capsys.readouterr().err


def test_cli_needs_a_corpus_to_build(dirs, capsys):
    shared_dataset("beir-queries-qrels/scifact")
    assert lsr_main(["evaluate", "--dataset", "nfcorpus", "--model", "bm25", *dirs]) == 2
    assert "has no corpus.jsonl" in capsys.readouterr().err


def test_cli_index_and_query_encodings(adi: Path, dirs, tmp_path: Path):
    from lsr.data import load_collection
    from lsr.encoders.query_encodings import write_query_encodings
    from lsr.pipeline import build_index
    from lsr.retrieval import Retriever

    build_index(tmp_path / "idx", corpus=adi, model="bm25", show_progress_bar=False)
    c = load_collection(adi)
    enc = tmp_path / "enc.tsv"
    # bag-of-words encodings of half the queries, in Anserini's format
    retriever = Retriever.load(tmp_path / "idx")
    half = c.queries[: len(c.queries) // 2]
    write_query_encodings(enc, [q.id for q in half], [retriever.encoder.query_terms(q.text) for q in half], scale=1)
    out_text, out_enc = tmp_path / "text.json", tmp_path / "enc.json"
    assert lsr_main(["evaluate", "--dataset", str(adi), "--index", str(tmp_path / "idx"), "--output", str(out_text), *dirs]) == 0
    assert lsr_main(["evaluate", "--dataset", str(adi), "--index", str(tmp_path / "idx"), "--query-encodings", str(enc),
                          "--name", "enc", "--output", str(out_enc), *dirs]) == 0
    text, encoded = json.loads(out_text.read_text()), json.loads(out_enc.read_text())
    assert encoded["evaluation"]["missing_from_run"] == len(c.queries) - len(half)
    runs = tmp_path / "runs" / "adi"
    full, part = read_run(runs / "idx.trec"), read_run(runs / "enc.trec")
    assert all(list(part[q.id]) == list(full[q.id]) for q in half)  # same rankings as the text queries
    assert text["metrics"]["nDCG@10"] > encoded["metrics"]["nDCG@10"]


def test_suite_runner(adi: Path, tmp_path: Path, monkeypatch):
    import importlib.util
    import os

    # Start outside the project: a suite that chdir'ed to its root would then be caught below.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cwd = os.getcwd()
    spec = importlib.util.spec_from_file_location("beir_suite", PROJECT_ROOT / "evaluation" / "beir.py")
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    config = {
        "output_dir": str(tmp_path / "out"), "runs_dir": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"),
        "k": 100, "metrics": ["nDCG@10", "R@100"],
        "datasets": [{"name": str(adi), "published": {"bm25": {"nDCG@10": 0.47}}}],
        "systems": [{"name": "bm25", "kind": "lsr", "model": "bm25"},
                    {"name": "bm25-exact-norms", "kind": "lsr", "model": "bm25", "params": {"norms": "exact"}}],
        "checks": [{"dataset": "*", "system": "bm25-exact-norms", "against": "bm25", "metric": "nDCG@10", "tolerance": 0.05},
                   {"dataset": "adi", "system": "bm25", "against": "published", "metric": "nDCG@10", "tolerance": 0.01}],
    }
    cfg = tmp_path / "suite.yaml"
    cfg.write_text(yaml.safe_dump(config))
    assert suite.main(["--config", str(cfg), "--no-efficiency"]) == 0
    assert os.getcwd() == cwd
    assert list(elsewhere.iterdir()) == []  # every output went where the config said
    assert suite.from_root("configs/beir.yaml") == PROJECT_ROOT / "configs" / "beir.yaml"  # relative: to the project
    assert suite.from_root(cfg) == cfg
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(r["dataset"]["name"], r["system"]["name"]) for r in results["results"]] == [("adi", "bm25"), ("adi", "bm25-exact-norms")]
    assert len(results["checks"]) == 2 and all(c["pass"] for c in results["checks"])
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| adi | bm25 |" in md and "## Reference checks" in md
    # re-running one system keeps the other row
    assert suite.main(["--config", str(cfg), "--systems", "bm25", "--no-efficiency"]) == 0
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())["results"]) == 2
    with pytest.raises(SystemExit):
        suite.main(["--config", str(cfg), "--systems", "nope"])
    assert os.getcwd() == cwd


def test_committed_config_is_valid():
    import importlib.util

    spec = importlib.util.spec_from_file_location("beir_suite", PROJECT_ROOT / "evaluation" / "beir.py")
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    cfg = suite.load_config(PROJECT_ROOT / "configs" / "beir.yaml")
    assert {d["name"] for d in cfg["datasets"]} == {"scifact", "vaswani", "cranfield", "medline", "cacm", "adi"}


def test_report_tables_and_plot(tmp_path: Path):
    from lsr.evaluation.report import efficiency_table, plot_recall_latency, quality_table

    row = {"dataset": {"name": "d"}, "system": {"name": "s"}, "metrics": {"nDCG@10": 0.5}, "evaluation": {"num_queries": 3},
           "efficiency": {"latency_ms_p50": 1.0, "recall_vs_exact": 1.0, "qps": 100.0, "index_bytes": 2e6, "threads": 2}}
    assert "| d | s | 0.5000 | 3 |" in quality_table([row], ["nDCG@10"])
    assert "| d | s | – | 1.00 | – | 100 | 2.0 | – | 1.000 | – | 2 |" in efficiency_table([row])  # dense scored: –
    pytest.importorskip("matplotlib")
    assert plot_recall_latency([row], tmp_path / "p.png").stat().st_size > 1000


def test_harness_takes_the_registry_modes(adi: Path, tmp_path: Path):
    import argparse

    from lsr.data import load_collection
    from lsr.evaluation.cli import add_evaluate_parser
    from lsr.evaluation.harness import SystemSpec, evaluate_system
    from lsr.retrieval.modes import MODES

    parser = add_evaluate_parser(argparse.ArgumentParser().add_subparsers())
    [mode_flag] = [a for a in parser._actions if "--mode" in a.option_strings]
    assert list(mode_flag.choices) == list(MODES) and mode_flag.default == "exact"
    spec = SystemSpec(name="x", model="bm25", mode="fast")
    with pytest.raises(ValueError, match=re.escape(f"unknown mode 'fast'; modes: {', '.join(MODES)}")):
        evaluate_system(spec, load_collection(adi), cache_dir=tmp_path / "cache", runs_dir=tmp_path / "runs")
    assert not (tmp_path / "cache").exists()  # refused before building anything


# ---- pyserini, the reference (optional extra) -----------------------------------------------
def _pyserini_or_skip():
    from lsr.evaluation import pyserini_ref

    ok, why = pyserini_ref.status()
    if not ok:
        pytest.skip(f"pyserini reference unavailable: {why}")
    return pyserini_ref


def test_pyserini_bm25_equals_ours_on_adi(adi: Path, dirs, tmp_path: Path):
    _pyserini_or_skip()
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    assert lsr_main(["evaluate", "--dataset", str(adi), "--model", "bm25", "--no-efficiency", "--output", str(ours), *dirs]) == 0
    assert lsr_main(["evaluate", "--dataset", str(adi), "--pyserini", "--no-efficiency", "--output", str(theirs), *dirs]) == 0
    a, b = json.loads(ours.read_text())["metrics"], json.loads(theirs.read_text())["metrics"]
    assert all(abs(a[m] - b[m]) < 0.005 for m in a), (a, b)


def test_analyzer_equals_lucene_on_adi(adi: Path):
    _pyserini_or_skip().start_jvm()
    from pyserini.analysis import Analyzer, get_lucene_analyzer

    from lsr.data import load_corpus, load_queries
    from lsr.encoders import LuceneEnglishAnalyzer

    lucene, ours = Analyzer(get_lucene_analyzer()), LuceneEnglishAnalyzer()
    texts = [d.title + "\n" + d.text for d in load_corpus(adi)] + [q.text for q in load_queries(adi)]
    assert all(list(lucene.analyze(t)) == ours(t) for t in texts)
