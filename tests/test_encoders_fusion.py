"""Fusion of any number of systems: weighted RRF and weighted linear fusion formulas, weights
checked, and the same fused ranking through the Python API, the CLI, REST and the harness."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import run_cli
from lsr.data import load_collection, load_queries
from lsr.evaluation.harness import SystemSpec, evaluate_system
from lsr.pipeline import build_index
from lsr.retrieval import Retriever
from lsr.retrieval.fusion import fuse, fuse_ids
from lsr.retrieval.hybrid import DEFAULT_WEIGHTS, FusedSystem, Fusion, default_weight, parse_system
from lsr.service import create_app


def ranked(rows, scores=None):
    rows = np.asarray(rows, dtype=np.int64)
    return rows, np.asarray(scores if scores is not None else -np.arange(len(rows)), dtype=np.float64)


def test_weighted_rrf_of_three_lists():
    rows, scores = fuse([ranked([1, 2]), ranked([2, 3]), ranked([3])], 10, fusion="rrf", weights=[2.0, 1.0, 0.5], rrf_k=10)
    want = {1: 2 / 11, 2: 2 / 12 + 1 / 11, 3: 1 / 12 + 0.5 / 11}
    assert rows.tolist() == sorted(want, key=lambda r: -want[r])
    assert scores == pytest.approx([want[r] for r in rows.tolist()])


def test_weighted_linear_of_three_lists_fills_missing_with_the_lowest():
    lists = [ranked([1, 2], [4.0, 2.0]), ranked([2, 3], [1.0, 0.0]), ranked([3, 1, 2], [9.0, 5.0, 1.0])]
    rows, scores = fuse(lists, 10, fusion="linear", weights=[1.0, 2.0, 0.5])
    # min-max per list: [1:1, 2:0], [2:1, 3:0], [3:1, 1:0.5, 2:0]; missing -> 0
    want = {1: 1 + 0 + 0.25, 2: 0 + 2 + 0, 3: 0 + 0 + 0.5}
    assert rows.tolist() == [2, 1, 3] and scores == pytest.approx([want[2], want[1], want[3]])


@pytest.mark.parametrize("weights, message", [
    ([1.0], "1 weights for 2 systems"),
    ([1.0, -0.5], "finite numbers >= 0"),
    ([1.0, float("nan")], "finite numbers >= 0"),
    ([0.0, 0.0], "all 0"),
])
def test_bad_weights_are_one_clear_error(weights, message):
    with pytest.raises(ValueError, match=message):
        fuse([ranked([1]), ranked([2])], 5, weights=weights)


def test_fuse_ids_and_system_specs():
    ids, scores = fuse_ids([(["a", "b"], [2.0, 1.0]), (["c", "a"], [5.0, 4.0])], 3, fusion="rrf")
    assert ids == ["a", "c", "b"] and scores == pytest.approx([1 / 61 + 1 / 62, 1 / 61, 1 / 62])
    ids, _ = fuse_ids([(["b", "a"], [2.0, 1.0]), (["a", "b"], [5.0, 4.0])], 2, fusion="rrf")
    assert ids == ["b", "a"]  # a tie: the id seen first wins
    assert parse_system("dir/x:dense=0.25") == {"index": "dir/x", "mode": "dense", "weight": 0.25}
    assert parse_system("dir/x") == {"index": "dir/x", "mode": "exact", "weight": None}  # the kind's default weight applies
    assert (default_weight("bm25", "exact"), default_weight("splade-tiny", "exact")) == (DEFAULT_WEIGHTS["bm25"], DEFAULT_WEIGHTS["splade"])
    assert default_weight("splade-tiny", "dense") == DEFAULT_WEIGHTS["dense"]
    with pytest.raises(ValueError, match="not a number"):
        parse_system("dir/x=heavy")
    with pytest.raises(ValueError, match="has no knob 'alpha'"):
        Fusion([FusedSystem(None, 1.0, "approx", {"alpha": 0.5})])


@pytest.fixture(scope="module")
def systems(adi, tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion")
    build_index(root / "bm25", corpus=adi, model="bm25", show_progress_bar=False)
    build_index(root / "splade", corpus=adi, model="splade-tiny", show_progress_bar=False)
    return root


def _manual(retrievers, options, queries, k, depth):
    """Each system searched alone to depth, fused by fuse_ids: what every interface must give."""
    out = []
    for q in queries:
        lists = [(r.search(q, depth, **opts).ids, r.search(q, depth, **opts).scores) for r, opts in retrievers]
        out.append(fuse_ids(lists, k, **options))
    return out


def test_fusion_equals_each_system_fused_by_hand_in_every_interface(systems, adi, tmp_path):
    bm25, splade = Retriever.load(systems / "bm25"), Retriever.load(systems / "splade")
    queries = [q.text for q in load_queries(adi)][:6]
    members = [FusedSystem(bm25, 0.5), FusedSystem(splade, 0.3), FusedSystem(splade, 0.2, query={"query_encoder": "idf"})]
    fusion = Fusion(members, fusion="linear", depth=20)
    got = fusion.search_batch(queries, 10)
    want = _manual([(bm25, {}), (splade, {}), (splade, {"query_encoder": "idf"})], {"fusion": "linear", "weights": [0.5, 0.3, 0.2]},
                   queries, 10, 20)
    for g, (ids, scores) in zip(got, want):
        assert g.ids == ids and g.scores == pytest.approx(scores)
    # a weight of 0 removes a system from an RRF fusion; one system alone keeps its ranking
    rrf3 = Fusion([FusedSystem(bm25, 1.0), FusedSystem(splade, 0.0), FusedSystem(splade, 1.0, query={"query_encoder": "idf"})],
                  fusion="rrf", depth=20)
    rrf2 = Fusion([FusedSystem(bm25, 1.0), FusedSystem(splade, 1.0, query={"query_encoder": "idf"})], fusion="rrf", depth=20)
    assert [r.ids for r in rrf3.search_batch(queries, 10)] == [r.ids for r in rrf2.search_batch(queries, 10)]
    assert Fusion([FusedSystem(bm25, 3.0)]).search(queries[0], 10).ids == bm25.search(queries[0], 10).ids

    # REST: the served index is "main", more come by name
    body = {"query": queries[0], "k": 10, "fusion": "linear", "depth": 20,
            "systems": [{"index": "bm25", "weight": 0.5}, {"index": "main", "weight": 0.3}, {"index": "main", "weight": 0.2, "query_encoder": "idf"}]}
    with TestClient(create_app(str(systems / "splade"), systems={"bm25": str(systems / "bm25")})) as client:
        answer = client.post("/search/fused", json=body).json()
        defaults = client.post("/search/fused", json={"query": queries[0], "k": 10, "depth": 20,
                                                      "systems": [{"index": "bm25"}, {"index": "main"}]}).json()
        unknown = client.post("/search/fused", json={**body, "systems": [{"index": "dense"}]})
        negative = client.post("/search/fused", json={**body, "systems": [{"index": "main", "weight": -1}]})
    assert answer["ids"] == want[0][0] and answer["scores"] == pytest.approx(want[0][1])
    by_default = _manual([(bm25, {}), (splade, {})], {"fusion": "linear", "weights": [DEFAULT_WEIGHTS["bm25"], DEFAULT_WEIGHTS["splade"]]},
                         queries[:1], 10, 20)[0]
    assert defaults["ids"] == by_default[0] and defaults["fusion"]["fusion"] == "linear"
    assert unknown.status_code in (400, 422) and "unknown system index 'dense'" in unknown.text
    assert negative.status_code == 422 and "weight" in negative.text

    # CLI
    out = run_cli("search", "--fuse", f"{systems / 'bm25'}=0.5", "--fuse", f"{systems / 'splade'}=0.3", "--query", queries[0],
                  "--fusion", "linear", "--depth", "20", "--json", "--query-encoder", "model").stdout
    cli = json.loads(out)
    two = _manual([(bm25, {}), (splade, {})], {"fusion": "linear", "weights": [0.5, 0.3]}, queries[:1], 10, 20)[0]
    assert [h["id"] for h in cli["hits"]] == two[0]

    # the evaluation harness
    collection = load_collection(adi)
    spec = SystemSpec(name="fused", kind="fusion", knobs={"fusion": "linear", "depth": 20},
                      systems=[{"name": "b", "kind": "index", "index": str(systems / "bm25"), "weight": 0.5},
                               {"name": "s", "kind": "index", "index": str(systems / "splade"), "weight": 0.3}])
    report = evaluate_system(spec, collection, k=10, runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", efficiency=False, log=lambda m: None)
    by_hand = _manual([(bm25, {}), (splade, {})], {"fusion": "linear", "weights": [0.5, 0.3]}, [q.text for q in collection.queries], 10, 20)
    run = {}
    for line in (tmp_path / "runs" / "adi" / "fused.trec").read_text().splitlines():
        qid, _, doc, rank, *_ = line.split()
        run.setdefault(qid, []).append(doc)
    assert [run.get(q.id, []) for q in collection.queries] == [ids for ids, _ in by_hand]
    assert report["system"]["fusion"]["systems"][0]["weight"] == 0.5
