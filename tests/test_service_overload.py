"""Overload and micro-batching (issue 13, items 2 and 3).

- A real ``lsr serve`` process at 256 concurrent clients: every client is answered before its
  2 s timeout, the excess gets fast 503s with Retry-After, every 200 is right, and the next
  request after the burst is served at normal speed.
- Requests whose client went away while they were queued are not computed, and /stats counts
  them as client-side outcomes (499), not server errors.
- Micro-batched text queries give exactly the answers of unbatched ones, really share encoder
  calls, and an encoder failure answers every waiting request at once.

Everything runs on 127.0.0.1 (or in-process), with a bounded number of requests, and every
wait has a timeout.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, start_server, stop_server

from lsr.retrieval import Retriever
from lsr.service import Limits, create_app

ADI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "adi"
CLIENTS = 256
CLIENT_TIMEOUT_S = 2.0
QUEUE_DEPTH = 16
QUEUE_TIMEOUT_MS = 500
K = 5


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adi_queries() -> list[str]:
    if not (ADI / "queries.jsonl").is_file():
        pytest.skip(f"ADI collection not found at {ADI} (../shared/data/adi relative to the repo root)")
    with (ADI / "queries.jsonl").open() as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


@pytest.fixture(scope="module")
def index_dir(adi_queries, tmp_path_factory) -> Path:
    """ADI (82 docs) encoded with splade-tiny: a one-segment collection, as `lsr index` writes."""
    from lsr.pipeline import build_index

    out = tmp_path_factory.mktemp("overload") / "adi"
    build_index(out, corpus=ADI, model="splade-tiny", show_progress_bar=False)
    return out


@pytest.fixture(scope="module")
def retriever(index_dir) -> Retriever:
    return Retriever.load(index_dir)



def _serve(index_dir: Path, log: Path, queue_timeout_ms: int):
    """Base URL of one `lsr serve` process (queue depth 16, default batching), stopped
    afterwards by the PID started here: SIGTERM, then SIGKILL."""
    args = ["serve", "--index", str(index_dir), "--port", str(free_port()), "--host", "127.0.0.1", "--queue-depth", str(QUEUE_DEPTH),
            "--queue-timeout-ms", str(queue_timeout_ms), "--no-access-log", "--log-level", "warning"]
    proc, base = start_server(args, log)
    try:
        yield base
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def server(index_dir, tmp_path_factory):
    """A short queue deadline (500 ms), so that a burst is shed."""
    yield from _serve(index_dir, tmp_path_factory.mktemp("overload-server") / "server.log", QUEUE_TIMEOUT_MS)


@pytest.fixture(scope="module")
def patient_server(index_dir, tmp_path_factory):
    """A deadline (30 s) no request of a small test reaches even on a loaded CI machine, so that
    only abandonment, never the deadline, decides who is not computed."""
    yield from _serve(index_dir, tmp_path_factory.mktemp("patient-server") / "server.log", 30_000)


# ---- 1. a real server at c=256 -------------------------------------------------------------
async def _burst(base: str, queries: list[str]) -> dict:
    """256 clients, each on its own connection (opened beforehand, so the burst measures the
    server, not 256 TCP handshakes), each sending one text query with a 2 s timeout."""
    tls = ssl.create_default_context()  # shared: one client each, without loading certificates 256 times
    clients = [httpx.AsyncClient(base_url=base, timeout=CLIENT_TIMEOUT_S, verify=tls, limits=httpx.Limits(max_connections=1))
               for _ in range(CLIENTS)]
    try:
        for c in clients:
            assert (await c.get("/health")).status_code == 200
        probe = clients[0]

        async def timed(query: str) -> tuple[float, httpx.Response]:
            start = time.perf_counter()
            r = await probe.post("/search", json={"query": query, "k": K})
            return time.perf_counter() - start, r

        before = []
        for q in queries[:5]:
            seconds, r = await timed(q)
            assert r.status_code == 200, r.text
            before.append(seconds)

        async def one(client: httpx.AsyncClient, i: int) -> dict:
            query = queries[i % len(queries)]
            start = time.perf_counter()
            try:
                async with asyncio.timeout(CLIENT_TIMEOUT_S):  # the whole request, not per read
                    r = await client.post("/search", json={"query": query, "k": K})
            except (TimeoutError, httpx.TimeoutException):
                return {"query": query, "outcome": "timeout", "seconds": time.perf_counter() - start}
            except httpx.TransportError as e:
                return {"query": query, "outcome": type(e).__name__, "seconds": time.perf_counter() - start}
            return {"query": query, "outcome": r.status_code, "seconds": time.perf_counter() - start,
                    "headers": r.headers, "body": r.json()}

        async with asyncio.timeout(60):
            results = await asyncio.gather(*(one(c, i) for i, c in enumerate(clients)))
        after, r = await timed(queries[-1])  # the very first request after the burst
        assert r.status_code == 200, r.text
        stats = (await probe.get("/stats")).json()
        return {"before": statistics.median(before), "after": after, "results": results, "stats": stats}
    finally:
        for c in clients:
            await c.aclose()


def test_c256_burst_is_shed_fast_and_the_server_recovers(server, adi_queries, retriever):
    run = asyncio.run(_burst(server, adi_queries))
    results = run["results"]
    outcomes = [r["outcome"] for r in results]
    counts = {o: outcomes.count(o) for o in set(outcomes)}
    assert set(counts) <= {200, 503}, f"every client must get a 200 or a 503 within {CLIENT_TIMEOUT_S} s: {counts}"
    assert max(r["seconds"] for r in results) < CLIENT_TIMEOUT_S
    assert counts.get(503, 0) > 0, f"a burst of {CLIENTS} over a queue of {QUEUE_DEPTH} must shed some: {counts}"
    assert counts.get(200, 0) > 0, counts

    shed = [r for r in results if r["outcome"] == 503]
    for r in shed:
        assert int(r["headers"]["retry-after"]) >= 1
        assert r["body"]["error"]["type"] == "overloaded" and r["body"]["error"]["message"]
    shed_p50 = statistics.median(r["seconds"] for r in shed)
    assert shed_p50 < 0.5 * CLIENT_TIMEOUT_S, f"503s must come fast, not after queueing: p50 {shed_p50:.3f} s"

    for r in results:  # every 200 is the right answer
        if r["outcome"] == 200:
            expected = retriever.search(r["query"], K)
            assert r["body"]["ids"] == expected.ids, r["query"]
            assert r["body"]["scores"] == pytest.approx(expected.scores, rel=1e-5, abs=1e-6), r["query"]

    # Nothing left queued behind the burst: the next request is served at the usual speed.
    assert run["after"] < 1.0 and run["after"] < max(5 * run["before"], 0.1), (run["before"], run["after"])

    sched, search = run["stats"]["service"]["scheduling"], run["stats"]["endpoints"]["/search"]
    assert sched["waiting"] == 0 and sched["shed"] == counts[503]
    assert search["server_errors"] == counts[503] and search["client_errors"] == 0
    # Inside the server (without the clients' own CPU and the sockets): a request is shed at
    # once or waits at most the queue deadline, plus its own computation. Before admission
    # covered the wait for the batched encoding, the p50 was ~1 s and the max ~1.5 s.
    latency = search["latency"]
    assert latency["p50_ms"] < QUEUE_TIMEOUT_MS / 2 and latency["max_ms"] < QUEUE_TIMEOUT_MS + 500, latency


def test_clients_that_leave_a_real_server_are_not_computed(patient_server, adi_queries):
    """Clients with a tiny timeout give up while their requests wait behind others: the server
    notices and skips them, and counts them as client-side outcomes (499)."""

    async def go() -> tuple[dict, dict, list]:
        async with httpx.AsyncClient(base_url=patient_server, timeout=10) as c:
            before = (await c.get("/stats")).json()

        async def patient(client: httpx.AsyncClient, q: str) -> int | str:
            r = await client.post("/search", json={"query": q, "k": K})
            return r.status_code if r.status_code == 200 else f"{r.status_code}: {r.text}"

        async def impatient(client: httpx.AsyncClient, q: str) -> str:
            try:
                await client.post("/search", json={"query": q, "k": K}, timeout=httpx.Timeout(10, read=0.005))
            except httpx.ReadTimeout:
                return "gave up"
            return "answered"

        limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)  # a client that gives up closes its connection
        async with httpx.AsyncClient(base_url=patient_server, timeout=10, limits=limits) as c, asyncio.timeout(60):
            # Patient requests first, so that the impatient ones queue behind them.
            tasks = [patient(c, q) for q in adi_queries[:QUEUE_DEPTH // 2]]
            tasks += [impatient(c, q) for q in adi_queries[: QUEUE_DEPTH // 2]]
            outcomes = await asyncio.gather(*tasks)
            await asyncio.sleep(0.5)  # the server finishes what was queued
            after = (await c.get("/stats")).json()
        return before, after, outcomes

    before, after, outcomes = asyncio.run(go())
    half = QUEUE_DEPTH // 2
    assert outcomes[:half] == [200] * half, outcomes
    gave_up = outcomes[half:].count("gave up")
    assert gave_up > 0, outcomes
    abandoned = after["service"]["scheduling"]["abandoned"] - before["service"]["scheduling"]["abandoned"]
    assert 0 < abandoned <= gave_up, (abandoned, outcomes)
    none = {"requests": 0, "client_errors": 0, "server_errors": 0}
    b, a = before["endpoints"].get("/search", none), after["endpoints"]["/search"]
    received = a["requests"] - b["requests"]  # an impatient request may have left before the server read it
    searched = sum(after["service"]["queries"].values()) - sum(before["service"]["queries"].values())
    assert half + abandoned <= received <= 2 * half
    assert searched == received - abandoned, "an abandoned request was searched"
    assert a["client_errors"] - b["client_errors"] == abandoned and a["server_errors"] == b["server_errors"]


# ---- an in-process ASGI driver that can hang up ---------------------------------------------
async def _call(app, method: str, path: str, body: dict | None = None, gone: asyncio.Event | None = None) -> tuple[int | None, dict | None]:
    """One request straight into the ASGI app; once ``gone`` is set, the client has disconnected
    (what uvicorn tells the app when the socket closes). Returns (status, JSON body), status None
    if no response was started."""
    data = json.dumps(body).encode() if body is not None else b""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }
    delivered = False
    hung_up = gone or asyncio.Event()

    async def receive() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": data, "more_body": False}
        await hung_up.wait()
        return {"type": "http.disconnect"}

    status, chunks = None, []

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    raw = b"".join(chunks)
    return status, (json.loads(raw) if raw and raw[:1] == b"{" else None)


class SlowSearches:
    """Wraps a Retriever's search_encoded: once armed (after the server's warm-up), counts calls
    and holds the first one until released."""

    def __init__(self, retriever: Retriever) -> None:
        self.inner = retriever.search_encoded
        self.armed = False
        self.calls = 0
        self.first_started = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        if not self.armed:
            return self.inner(*args, **kwargs)
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            self.first_started.set()
            assert self.release.wait(20), "the test never released the first search"
        return self.inner(*args, **kwargs)


async def _wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def _stats(app) -> dict:
    status, body = await _call(app, "GET", "/stats")
    assert status == 200, body
    return body


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
def test_abandoned_requests_are_skipped_and_counted_as_client_side(index_dir, adi_queries, monkeypatch, batched):
    """One worker, held by a slow first search; 8 requests queue behind it and 6 of their
    clients hang up. Only the 2 live ones are computed (and, batched, only their texts encoded);
    /stats counts the 6 as client errors (499), not as server errors."""
    retriever = Retriever.load(index_dir)
    slow = SlowSearches(retriever)
    monkeypatch.setattr(retriever, "search_encoded", slow)
    encoded_texts = []
    inner_encode = retriever.encode_queries
    monkeypatch.setattr(retriever, "encode_queries", lambda texts: encoded_texts.extend(t for t in texts if isinstance(t, str)) or inner_encode(texts))
    # batched: a wide window, so that the clients hang up before their batch is formed
    limits = Limits(max_concurrency=1, queue_depth=16, queue_timeout_ms=20_000, batch_wait_ms=300 if batched else 0, batch_max=32)
    app = create_app(retriever, limits=limits)
    queued = adi_queries[:8]

    async def go():
        async with app.router.lifespan_context(app), asyncio.timeout(30):
            encoded_texts.clear()  # the warm-up's
            slow.armed = True
            first = asyncio.create_task(_call(app, "POST", "/search", {"vector": {"information": 1.0}, "k": K}))
            assert await asyncio.to_thread(slow.first_started.wait, 10)
            gone = [asyncio.Event() for _ in queued]
            waiting = [asyncio.create_task(_call(app, "POST", "/search", {"query": q, "k": K}, g)) for q, g in zip(queued, gone)]

            async def all_queued() -> bool:  # each holds a place in the queue from its arrival
                return (await _stats(app))["service"]["scheduling"]["waiting"] == len(queued)

            await _wait_until(all_queued)
            for g in gone[:6]:
                g.set()  # these clients hang up while their requests wait
            if batched:
                async def batch_formed() -> bool:  # the batcher has left the gone texts out
                    return (await _stats(app))["service"]["scheduling"]["abandoned"] == 6
                await _wait_until(batch_formed)
            slow.release.set()
            results = [await first] + list(await asyncio.gather(*waiting))
            return results, await _stats(app)

    results, stats = asyncio.run(go())
    statuses = [s for s, _ in results]
    assert statuses == [200] + [499] * 6 + [200] * 2, statuses
    assert slow.calls == 3 < 1 + len(queued), "abandoned requests were searched"
    for (status, body), q in zip(results[7:], queued[6:]):
        expected = Retriever.load(index_dir).search(q, K)
        assert body["ids"] == expected.ids
    if batched:
        assert sorted(encoded_texts) == sorted(queued[6:]), "abandoned texts were encoded"
    else:
        assert len(encoded_texts) == 2, encoded_texts
    sched, search = stats["service"]["scheduling"], stats["endpoints"]["/search"]
    assert sched["abandoned"] == 6 and sched["waiting"] == 0 and sched["shed"] == 0
    assert search["requests"] == 9 and search["client_errors"] == 6 and search["server_errors"] == 0


def test_a_cancelled_request_counts_as_client_side(index_dir):
    """A request dropped before any response started (the server cancelled it as its client
    left) is a client-side outcome in /stats, not a server error."""
    retriever = Retriever.load(index_dir)
    slow = SlowSearches(retriever)
    retriever.search_encoded = slow
    app = create_app(retriever, limits=Limits(max_concurrency=1, batch_wait_ms=0))

    async def go():
        async with app.router.lifespan_context(app), asyncio.timeout(30):
            slow.armed = True
            first = asyncio.create_task(_call(app, "POST", "/search", {"vector": {"information": 1.0}}))
            assert await asyncio.to_thread(slow.first_started.wait, 10)
            queued = asyncio.create_task(_call(app, "POST", "/search", {"vector": {"information": 1.0}}))
            await asyncio.sleep(0.05)
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            slow.release.set()
            assert (await first)[0] == 200
            return await _stats(app)

    search = asyncio.run(go())["endpoints"]["/search"]
    assert search == {**search, "requests": 2, "client_errors": 1, "server_errors": 0}
    assert slow.calls == 1


# ---- 3. micro-batching ---------------------------------------------------------------------
def _forty(queries: list[str]) -> list[str]:
    """40 different query texts from ADI's 35."""
    extra = [" ".join(q.split()[: max(3, len(q.split()) // 2)]) for q in queries[:5]]
    texts = list(dict.fromkeys(queries + extra))[:40]
    assert len(texts) == 40
    return texts


async def _concurrently(app, bodies: list[dict], timeout: float = 60.0) -> tuple[list[httpx.Response], dict]:
    """Send ``bodies`` to /search at once through the app's lifespan; returns the responses and /stats."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        async with asyncio.timeout(timeout):
            responses = await asyncio.gather(*(c.post("/search", json=b) for b in bodies))
            stats = (await c.get("/stats")).json()
    return list(responses), stats


def test_batched_text_queries_equal_unbatched_and_share_encoder_calls(retriever, adi_queries):
    bodies = [{"query": q, "k": 10} for q in _forty(adi_queries)]
    batched, stats_on = asyncio.run(_concurrently(create_app(retriever, limits=Limits(batch_wait_ms=20, batch_max=32)), bodies))
    unbatched, stats_off = asyncio.run(_concurrently(create_app(retriever, limits=Limits(batch_wait_ms=0)), bodies))
    for on, off in zip(batched, unbatched):
        assert on.status_code == 200 and off.status_code == 200, (on.text, off.text)
        assert on.json()["ids"] == off.json()["ids"]
        # Not bit-exact: a text padded to a longer batch-mate goes through other matrix shapes
        # (query weights move by ~2e-6, scores by up to ~1e-6 relative), as in /search/batch. The
        # nearest neighbouring scores here are 1.3e-4 apart, so the ranking cannot change.
        assert on.json()["scores"] == pytest.approx(off.json()["scores"], rel=1e-5)
    on, off = stats_on["service"]["scheduling"], stats_off["service"]["scheduling"]
    assert on["batched_texts"] == len(bodies) and 1 <= on["encode_batches"] < len(bodies) / 2, on
    assert on["batched_texts"] / on["encode_batches"] > 1
    assert off["encode_batches"] == off["batched_texts"] == 0


def test_batched_explain_and_vectors_bypassing_the_batcher(retriever, adi_queries):
    texts = adi_queries[:6]
    vector = retriever.encode_queries([texts[0]]).to_dict(0)
    bodies = [{"query": q, "k": 5, "explain": True} for q in texts] + [{"vector": vector, "k": 5}]
    responses, stats = asyncio.run(_concurrently(create_app(retriever, limits=Limits(batch_wait_ms=20, batch_max=32)), bodies))
    for r, q in zip(responses, texts):
        assert r.status_code == 200, r.text
        body, expected = r.json(), retriever.search(q, 5)
        assert body["ids"] == expected.ids and body["scores"] == pytest.approx(expected.scores, rel=1e-6)
        assert len(body["explanations"]) == len(body["ids"])
        for score, terms in zip(body["scores"], body["explanations"]):
            assert terms and sum(t["contribution"] for t in terms) == pytest.approx(score, rel=1e-4)
    by_vector = responses[-1]
    assert by_vector.status_code == 200 and by_vector.json()["ids"] == retriever.search(vector, 5).ids
    assert stats["service"]["scheduling"]["batched_texts"] == len(texts), "the vector query went through the batcher"


@pytest.mark.parametrize(("error", "status", "kind"), [(RuntimeError("encoder broke"), 500, "internal_error"),
                                                       (ValueError("bad text"), 422, "invalid_input")])
def test_an_encoder_failure_answers_every_waiting_request(index_dir, adi_queries, error, status, kind):
    """One failing batch: every request in it gets the same clean JSON error at once (no hang),
    the next batch works, and /stats counts a 500 as a server error."""
    retriever = Retriever.load(index_dir)
    inner = retriever.encode_queries
    failures = []

    def encode_queries(texts):
        if not failures:
            failures.append(list(texts))
            raise error
        return inner(texts)

    app = create_app(retriever, limits=Limits(batch_wait_ms=50, batch_max=32))
    bodies = [{"query": q, "k": K} for q in adi_queries[:5]]

    async def go():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            retriever.encode_queries = encode_queries  # after the warm-up
            async with asyncio.timeout(15):
                failed = await asyncio.gather(*(c.post("/search", json=b) for b in bodies))
                after = await c.post("/search", json=bodies[0])
                stats = (await c.get("/stats")).json()
        return failed, after, stats

    failed, after, stats = asyncio.run(go())
    assert sorted(failures[0]) == sorted(b["query"] for b in bodies), "the five texts were meant to share one batch"
    for r in failed:
        assert r.status_code == status, r.text
        assert r.json()["error"]["type"] == kind
    assert after.status_code == 200 and after.json()["ids"] == Retriever.load(index_dir).search(bodies[0]["query"], K).ids
    search = stats["endpoints"]["/search"]
    assert search["requests"] == 6
    assert (search["server_errors"], search["client_errors"]) == ((5, 0) if status >= 500 else (0, 5))
