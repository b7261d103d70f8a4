"""A real server process: start it on a free loopback port, wait for /health, query it over
HTTP, and stop it by the PID this test started."""

import os
import subprocess
import sys
import time

import httpx
import pytest
from conftest import free_port, start_server, stop_server
from service_fixtures import tiny_index_dir

from lsr.cli import build_parser, cmd_serve
from lsr.service import server as service_server


@pytest.fixture
def server(tmp_path):
    """Base URL of a two-worker server over the tiny index; the process is stopped afterwards."""
    args = ["serve", "--index", str(tiny_index_dir()), "--port", str(free_port()), "--workers", "2", "--no-access-log"]
    proc, base = start_server(args, tmp_path / "server.log")
    try:
        yield base
    finally:
        stop_server(proc)


def test_served_over_http(server):
    with httpx.Client(base_url=server, timeout=10) as client:
        r = client.post("/search", json={"vector": {"apple": 1.0, "pie": 1.0}, "k": 2})
        assert r.status_code == 200, r.text
        assert r.json()["ids"] == ["d1", "d3"]
        r = client.post("/search/batch", json={"queries": [{"vector": {"tart": 1.0}}, {"vector": {}}]})
        assert [h["ids"] for h in r.json()["results"]] == [["d2"], []]
        err = client.post("/search", json={"vector": {"apple": 1.0}, "k": 0})
        assert err.status_code == 422 and err.json()["error"]["type"] == "validation_error"
        stats = client.get("/stats").json()
        assert stats["index"]["num_docs"] == 4 and stats["service"]["pid"] != os.getpid()
        # Without TCP_NODELAY on the workers' connections every keep-alive request waits
        # ~40 ms for a delayed ACK; a few ms is normal even on a busy machine.
        latencies = []
        for _ in range(21):
            start = time.perf_counter()
            client.get("/health")
            latencies.append(time.perf_counter() - start)
        assert sorted(latencies)[10] < 0.035, latencies


def test_bad_index_dir_exits_with_a_message(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lsr.cli", "serve", "--index", str(tmp_path / "missing"), "--port", str(free_port())],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "lsr: error:" in proc.stderr and "missing" in proc.stderr


def test_serve_verifies_checksums_at_start(tmp_path, monkeypatch):
    """Same-size damage to the weights passes the structural checks; the checksums catch it
    before the server starts, unless --no-verify says to skip them."""
    import numpy as np
    import shutil

    damaged = tmp_path / "index"
    shutil.copytree(tiny_index_dir(), damaged)
    weights = damaged / "forward_weights.npy"
    array = np.load(weights)
    array[0] += 1.0
    np.save(weights, array)
    proc = subprocess.run([sys.executable, "-m", "lsr.cli", "serve", "--index", str(damaged), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "forward_weights.npy does not match its checksum" in proc.stderr, proc.stderr
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    service_server.serve(damaged, port=free_port(), verify=False)
    assert len(calls) == 1  # started, the damage unseen, as asked


def test_serve_subcommand_parses_and_dispatches(monkeypatch):
    calls = []
    monkeypatch.setattr(service_server, "serve", lambda *args, **kwargs: calls.append((args, kwargs)))
    args = build_parser().parse_args(["serve", "--index", "idx", "--port", "9000", "--workers", "2", "--cors-origin", "https://a.example", "--no-access-log"])
    assert args.func is cmd_serve and args.func(args) == 0
    assert calls == [(("idx", "127.0.0.1", 9000, 2), {
        "public_reads": False, "cors_origins": ["https://a.example"], "log_level": "info", "access_log": False,
        "writable": False, "verify": True, "systems": {}, "opener": None, "limits": {"commit_docs": 1000, "commit_ms": 1000, "queue_depth": 64, "queue_timeout_ms": 2000,
                                      "batch_max": 32, "batch_wait_ms": 2.0},
    })]
    calls.clear()
    args = build_parser().parse_args(["serve", "--index", "idx", "--writable", "--commit-docs", "5", "--commit-ms", "20",
                                      "--queue-depth", "8", "--batch-wait-ms", "0"])
    assert args.func(args) == 0
    assert calls == [(("idx", "127.0.0.1", 8000, 1), {
        "public_reads": False, "cors_origins": [], "log_level": "info", "access_log": True,
        "writable": True, "verify": True, "systems": {}, "opener": None, "limits": {"commit_docs": 5, "commit_ms": 20, "queue_depth": 8, "queue_timeout_ms": 2000,
                                     "batch_max": 32, "batch_wait_ms": 0.0},
    })]
