"""The strategy exact search used is reported by the REST API, and can be forced through it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from lsr.service import create_app
from service_fixtures import tiny_index_dir


def test_search_reports_and_forces_the_strategy():
    with TestClient(create_app(tiny_index_dir())) as client:
        body = client.post("/search", json={"vector": {"apple": 1.0, "pie": 1.0}, "k": 2}).json()
        assert body["strategy"] in ("exhaustive", "blockmax", "superblock")
        forced = client.post("/search", json={"vector": {"apple": 1.0, "pie": 1.0}, "k": 2,
                                               "knobs": {"strategy": "blockmax"}}).json()
        assert forced["strategy"] == "blockmax" and forced["ids"] == body["ids"]
        batch = client.post("/search/batch", json={"queries": [{"vector": {"apple": 1.0}}, {"vector": {"pie": 1.0}}],
                                                   "knobs": {"strategy": "superblock"}}).json()
        assert [r["strategy"] for r in batch["results"]] == ["superblock", "superblock"]
        approx = client.post("/search", json={"vector": {"apple": 1.0}, "knobs": {"strategy": "wand"}})
        assert approx.status_code == 422
