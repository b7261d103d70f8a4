"""Shared fixtures: the offline collections in ../shared/data and a small ADI index."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lsr.data.beir import shared_data_dirs


def shared_dataset(name: str) -> Path:
    """Folder of a shared collection, or skip the test saying where it was looked for."""
    for d in shared_data_dirs():
        if (d / name / "corpus.jsonl").is_file() or (d / name / "queries.jsonl").is_file():
            return d / name
    pytest.skip(f"collection {name!r} not found in {[str(d) for d in shared_data_dirs()]} (../shared/data is absent)")


STARTUP_TIMEOUT_S = 120  # a server imports torch and numba, possibly on a busy machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`lsr <args>` (a `serve` on 127.0.0.1 with its `--port`) in its own process group, its
    output appended to ``log`` (a file, not a pipe nobody reads, which could fill and block
    it); returns (process, base URL) once /health answers 200, or fails the test."""
    port = args[args.index("--port") + 1]
    with log.open("a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lsr.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(proc)
            pytest.fail(f"no healthy server on {base} after {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")
        time.sleep(0.25)


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server this test started, by its PID: SIGTERM (uvicorn stops its workers), then
    SIGKILL to the process group it was started in."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the `lsr` command line in a child process, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "lsr.cli", *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"lsr {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def adi() -> Path:
    return shared_dataset("adi")


@pytest.fixture(scope="session")
def adi_index(adi: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ADI (82 docs) encoded with splade-tiny and indexed through the CLI."""
    out = tmp_path_factory.mktemp("adi") / "index"
    run_cli("index", "--corpus", str(adi), "--out", str(out))
    return out


@pytest.fixture(scope="session")
def splade_tiny():
    from lsr.encoders import SpladeEncoder

    return SpladeEncoder("splade-tiny")
