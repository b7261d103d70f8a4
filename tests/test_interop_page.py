"""The search page at GET /, driven in headless Chromium against a real server process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, run_cli, start_server, stop_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEY = "page-test-key"


@pytest.fixture(scope="module")
def server(adi: Path, tmp_path_factory):
    """`lsr serve` over ADI (BM25: titles and texts stored) with an API key set."""
    work = tmp_path_factory.mktemp("page")
    run_cli("index", "--corpus", str(adi), "--model", "bm25", "--out", str(work / "idx"))
    env = {**os.environ, "LSR_API_KEY": KEY}
    proc, base = start_server(["serve", "--index", str(work / "idx"), "--port", str(free_port()), "--no-access-log"],
                              work / "server.log", env=env)
    try:
        yield base
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install '.[test]')")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run installs it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def test_page_is_served_without_data(server: str):
    """The page itself needs no key (it holds no data); the API it calls does."""
    page = httpx.get(f"{server}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '"modes": ["exact", "exhaustive"' in page.text and "__CONFIG__" not in page.text
    assert httpx.post(f"{server}/search", json={"query": "x"}, timeout=10).status_code == 401


def test_search_in_the_browser(server: str, browser):
    """Type a query, submit: k hits with titles, snippets, highlighted matched terms, latency."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/")
    page.fill("#key", KEY)
    page.fill("#q", "computer information retrieval systems")
    page.select_option("#mode", "exact")
    page.fill("#k", "5")
    page.click("button[type=submit]")
    page.wait_for_selector("li.hit", timeout=30_000)
    hits = page.locator("li.hit")
    assert hits.count() == 5
    expected = httpx.post(f"{server}/search", headers={"X-API-Key": KEY}, timeout=30,
                          json={"query": "computer information retrieval systems", "k": 5, "fields": ["title"]}).json()
    assert page.locator("li.hit .id").all_inner_texts() == expected["ids"]
    assert [t.strip() for t in page.locator("li.hit .title").all_inner_texts()] == [f["title"].strip() for f in expected["fields"]]
    assert page.locator("li.hit .snippet").first.inner_text().strip()
    marks = [m.lower() for m in page.locator("li.hit mark").all_inner_texts()]
    assert marks and all(m.startswith(("comput", "inform", "retriev", "system")) for m in marks)
    assert page.locator("li.hit .term").count() >= 5  # matched terms with their contributions
    status = page.locator("#status").inner_text()
    assert "5 hits" in status and "server" in status and "ms" in status
    assert not errors
    page.close()


def test_wrong_key_shows_the_error(server: str, browser):
    page = browser.new_page()
    page.goto(f"{server}/")
    page.fill("#key", "wrong")
    page.fill("#q", "retrieval")
    page.click("button[type=submit]")
    page.wait_for_function("document.querySelector('#status').classList.contains('error')", timeout=30_000)
    assert "401" in page.locator("#status").inner_text() and page.locator("li.hit").count() == 0
    page.close()
