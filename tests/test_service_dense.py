"""The REST service's dense modes on ADI with a dense part (built through the CLI by test_dense's fixture)."""

from __future__ import annotations

import pytest

from lsr.retrieval import Retriever

from test_dense import adi_hybrid  # noqa: F401 - the fixture

pytest.importorskip("faiss")
pytest.importorskip("fastapi")


def test_rest_dense_modes(adi_hybrid):  # noqa: F811
    from fastapi.testclient import TestClient

    from lsr.service.app import create_app

    with TestClient(create_app(adi_hybrid)) as client:
        for mode, knobs in (("dense", {}), ("hybrid", {"dense_weight": 0.4}), ("hybrid", {"fusion": "linear", "normalization": "zscore"}), ("selective", {"candidates": 5, "centroids": 2})):
            r = client.post("/search", json={"query": "computer information retrieval", "k": 3, "mode": mode, "knobs": knobs})
            assert r.status_code == 200, r.text
            assert len(r.json()["ids"]) == 3
        r = client.post("/search/batch", json={"queries": [{"query": "indexing"}, {"query": "retrieval"}], "mode": "hybrid"})
        assert r.status_code == 200 and len(r.json()["results"]) == 2
        r = client.post("/search", json={"query": "indexing", "mode": "hybrid", "knobs": {"dense_weight": 1.5}})
        assert r.status_code == 422 and r.json()["error"]["message"] == "body: dense_weight must be in [0, 1], got 1.5"
        r = client.post("/search", json={"query": "indexing", "mode": "hybrid", "knobs": {"alpha": 0.5}})  # BMP's knob, not fusion's
        assert r.status_code == 422 and r.json()["error"]["message"].startswith("body: mode 'hybrid' has no knob 'alpha' (its knobs: fusion, dense_weight")
        r = client.post("/search", json={"query": "indexing", "mode": "hybrid", "knobs": {"fusion": "max"}})
        assert r.status_code == 422 and r.json()["error"]["message"] == "body: fusion must be one of rrf, linear, got 'max'"
        r = client.post("/search", json={"vector": {"index": 1.0}, "mode": "dense"})
        assert r.status_code == 422 and "needs text queries" in r.json()["error"]["message"]
        r = client.post("/search", json={"query": "indexing", "mode": "hybrid", "explain": True})
        assert r.status_code == 422 and "explain" in r.json()["error"]["message"]
    sparse_only = Retriever.load(adi_hybrid)
    sparse_only.index.dense = None
    with TestClient(create_app(sparse_only)) as client:
        r = client.post("/search", json={"query": "indexing", "mode": "hybrid"})
        assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_input"
        assert r.json()["error"]["message"] == (f"mode 'hybrid' needs the dense part, which the index {adi_hybrid} lacks: "
                                                "build it with `lsr index --dense-model M`")


def test_rest_dense_kind_knobs(adi_hybrid, tmp_path):  # noqa: F811
    """ef_search tunes an HNSW dense part, nprobe an IVF one; a part of another kind refuses them
    with a 422 naming the knob and the kind (the schema cannot know the index's kind)."""
    import numpy as np
    from fastapi.testclient import TestClient

    from lsr.index.dense import add_dense
    from lsr.service.app import create_app

    query = {"query": "computer information retrieval", "k": 3, "mode": "hybrid"}
    with TestClient(create_app(adi_hybrid)) as client:  # flat
        for knob in ({"ef_search": 64}, {"nprobe": 4}):
            r = client.post("/search", json={**query, "knobs": knob})
            assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_input", r.text
            assert r.json()["error"]["message"] == "ef_search applies to kind 'hnsw' and nprobe to kind 'ivf'; this dense index is 'flat'"
        flat = client.post("/search", json=query).json()
    hnsw = Retriever.load(adi_hybrid)
    part = hnsw.index.dense
    add_dense(hnsw.index, np.asarray(part.vectors), hnsw.doc_ids, model=part.settings["model"],
              encoder_settings=part.settings.get("encoder"), kind="hnsw")
    with TestClient(create_app(hnsw)) as client:
        r = client.post("/search", json={**query, "knobs": {"ef_search": 400}})
        assert r.status_code == 200, r.text
        assert r.json()["ids"] == flat["ids"] and r.json()["settings"]["knobs"] == {"ef_search": 400}
        r = client.post("/search", json={**query, "knobs": {"nprobe": 4}})
        assert r.status_code == 422 and r.json()["error"]["message"].endswith("this dense index is 'hnsw'")


def test_rest_dense_weight_selects_linear_fusion(adi_hybrid):  # noqa: F811
    from fastapi.testclient import TestClient

    from lsr.service.app import create_app

    query = {"query": "computer information retrieval", "k": 5, "mode": "hybrid"}
    with TestClient(create_app(adi_hybrid)) as client:
        weighted = client.post("/search", json={**query, "knobs": {"dense_weight": 0.3}}).json()
        linear = client.post("/search", json={**query, "knobs": {"fusion": "linear", "dense_weight": 0.3}}).json()
        rrf = client.post("/search", json={**query, "knobs": {"fusion": "rrf"}}).json()
        assert (weighted["ids"], weighted["scores"]) == (linear["ids"], linear["scores"])
        assert weighted["scores"] != rrf["scores"]
        r = client.post("/search", json={**query, "knobs": {"fusion": "rrf", "dense_weight": 0.3}})
        assert r.status_code == 422 and "dense_weight weighs linear fusion; RRF takes none" in r.json()["error"]["message"]
