"""Shared fixtures: the offline collections in ../shared/data and a small ADI index."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lsr.data.beir import shared_data_dirs


def shared_dataset(name: str) -> Path:
    """Folder of a shared collection, or skip the test saying where it was looked for."""
    for d in shared_data_dirs():
        if (d / name / "corpus.jsonl").is_file() or (d / name / "queries.jsonl").is_file():
            return d / name
    pytest.skip(f"collection {name!r} not found in {[str(d) for d in shared_data_dirs()]} (../shared/data is absent)")


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
