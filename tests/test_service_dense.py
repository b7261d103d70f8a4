"""The REST service's dense modes on ADI with a dense part (built through the CLI by test_dense's fixture)."""

from __future__ import annotations

import pytest

from lsr.index import Index

from test_dense import adi_hybrid  # noqa: F401 - the fixture

pytest.importorskip("faiss")
pytest.importorskip("fastapi")


def test_rest_dense_modes(adi_hybrid):  # noqa: F811
    from fastapi.testclient import TestClient

    from lsr.service.app import create_app

    with TestClient(create_app(adi_hybrid)) as client:
        for mode, knobs in (("dense", {}), ("hybrid", {"alpha": 0.4}), ("selective", {"candidates": 5, "centroids": 2})):
            r = client.post("/search", json={"query": "computer information retrieval", "k": 3, "mode": mode, "knobs": knobs})
            assert r.status_code == 200, r.text
            assert len(r.json()["ids"]) == 3
        r = client.post("/search/batch", json={"queries": [{"query": "indexing"}, {"query": "retrieval"}], "mode": "hybrid"})
        assert r.status_code == 200 and len(r.json()["results"]) == 2
        r = client.post("/search", json={"query": "indexing", "mode": "hybrid", "knobs": {"alpha": 1.5}})
        assert r.status_code == 422 and "alpha" in r.json()["error"]["message"]
        r = client.post("/search", json={"vector": {"index": 1.0}, "mode": "dense"})
        assert r.status_code == 422 and "needs text queries" in r.json()["error"]["message"]
        r = client.post("/search", json={"query": "indexing", "mode": "hybrid", "explain": True})
        assert r.status_code == 422 and "explain" in r.json()["error"]["message"]
    sparse_only = Index.load(adi_hybrid)
    sparse_only.dense = None
    with TestClient(create_app(sparse_only)) as client:
        r = client.post("/search", json={"query": "indexing", "mode": "hybrid"})
        assert r.status_code == 422 and "no dense part" in r.json()["error"]["message"]
