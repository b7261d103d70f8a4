"""Sharded build and search on a local Ray cluster the tests start themselves (loopback, 2 CPUs).

The reference for every sharded answer is the unsharded collection built from the same corpus:
exact and exhaustive search must return the same ids in the same order with the same scores,
ties included (the corpus repeats texts, so BM25 ties abound).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'lsr[distributed]')")

from lsr.distributed import ShardedRetriever, ShardsUnavailable, build_sharded, shard_of  # noqa: E402
from lsr.distributed import retriever as sharded_retriever  # noqa: E402
from lsr.distributed import wire  # noqa: E402
from lsr.distributed.layout import MANIFEST, Layout  # noqa: E402
from lsr.errors import DataError, IndexFormatError  # noqa: E402
from lsr.index.approx import ApproxSettings  # noqa: E402
from lsr.pipeline import build_index  # noqa: E402
from lsr.retrieval.collection import Collection  # noqa: E402
from conftest import free_port, run_cli, start_server, stop_server  # noqa: E402

WORDS = "sparse dense retrieval index shard query ray actor merge score block posting vector term model".split()
QUERIES = ["sparse retrieval", "shard merge score", "ray actor", "posting block term vector", "model", "index query dense"]
ALL = 10_000  # k above the corpus size: every matching document


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def write_corpus(path: Path, n: int = 240, seed: int = 0, repeats: bool = True) -> Path:
    """Short texts over a small vocabulary, every fifth one a repeat of an earlier text (ties)
    unless not ``repeats``."""
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    with path.open("w") as f:
        for i in range(n):
            text = texts[int(rng.integers(len(texts)))] if repeats and i % 5 == 4 else " ".join(rng.choice(WORDS, size=rng.integers(2, 7)))
            texts.append(text)
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": text, "metadata": {"year": 2000 + i % 10}}) + "\n")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An unsharded BM25 collection and a 3-shard one of the same corpus (with the approx part)."""
    root = tmp_path_factory.mktemp("sharded")
    corpus = write_corpus(root / "corpus.jsonl")
    approx = ApproxSettings(n_postings=None)  # no static pruning: heap_factor 0 is then exhaustive
    one, _ = build_index(root / "one", corpus=corpus, model="bm25", approx=approx, show_progress_bar=False)
    summary = build_sharded(root / "three", 3, corpus=corpus, model="bm25", approx=approx, show_progress_bar=False)
    return root, corpus, one, summary


@pytest.fixture(scope="module")
def sharded(built):
    retriever = ShardedRetriever(built[0] / "three", timeout_s=20)
    yield retriever
    retriever.close()


def same(a, b) -> None:
    assert [r.ids for r in a] == [r.ids for r in b]
    assert [r.scores for r in a] == [r.scores for r in b]


def test_routing_is_a_stable_hash_of_the_id():
    assert [shard_of(x, 4) for x in ["doc-1", "doc-2", "a", "é"]] == [1, 2, 3, 3]  # fixed forever: layouts depend on it
    counts = np.bincount([shard_of(f"id{i}", 4) for i in range(8000)], minlength=4)
    assert counts.min() > 0.9 * 2000 and counts.max() < 1.1 * 2000


def test_layout_names_every_shard_and_routes_by_id(built):
    root, _, one, summary = built
    layout = Layout.read(root / "three")
    assert layout.num_shards == 3 and layout.manifest["num_docs"] == one.num_docs == sum(summary["docs_per_shard"])
    for s in range(3):
        with Collection.open(layout.shard_path(s)) as shard:
            ids = shard.snapshot().doc_ids(np.arange(shard.snapshot().num_rows))
        assert ids and all(shard_of(d, 3) == s for d in ids)
        assert len(ids) == layout.manifest["shards"][s]["docs"]
        positions = np.load(layout.positions_path(s))
        assert [f"d{p}" for p in positions] == ids  # corpus positions, in the shard's row order


@pytest.mark.parametrize("mode", ["exact", "exhaustive"])
def test_exact_sharded_equals_unsharded_ties_included(built, sharded, mode):
    one = built[2]
    for k in (1, 3, 10, 57, ALL):
        reference = one.search_batch(QUERIES, k, mode=mode)
        assert k < 10 or any(len(set(r.scores)) < len(r.scores) for r in reference)  # the test really has ties
        same(sharded.search_batch(QUERIES, k, mode=mode), reference)
    assert all(isinstance(link, socket.socket) for link in sharded._links())  # answered over the direct transport


def test_filters_and_fields_work_per_shard(built, sharded):
    one = built[2]
    where = {"filter": {"year": {"gte": 2005}}, "fields": ["text", "metadata"], "snippet": 12}
    reference = one.search_batch(QUERIES, 20, **where)
    got = sharded.search_batch(QUERIES, 20, **where)
    same(got, reference)
    assert [r.fields for r in got] == [r.fields for r in reference]
    assert all(f["metadata"]["year"] >= 2005 for r in got for f in r.fields)


def test_approx_sharded(built, sharded):
    one = built[2]
    # every term, no block skipped: approx scores every matching document, on each shard as on one index
    full = {"query_cut": 50, "heap_factor": 0.0}
    same(sharded.search_batch(QUERIES, 10, mode="approx", **full), one.search_batch(QUERIES, 10, mode="approx", **full))
    assert [r.ids for r in one.search_batch(QUERIES, 10, mode="approx", **full)] == \
        [r.ids for r in one.search_batch(QUERIES, 10, mode="exhaustive")]
    for r in sharded.search_batch(QUERIES, 10, mode="approx", query_cut=2, heap_factor=0.9):
        assert len(r.ids) == 10 and not r.partial and r.scores == sorted(r.scores, reverse=True)


def test_bad_input_gets_one_clear_error(built, sharded, tmp_path):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        sharded.search("sparse", 0)
    with pytest.raises(ValueError, match="has no knob 'query_cut'"):
        sharded.search("sparse", 5, mode="exact", query_cut=3)
    with pytest.raises(DataError, match="unknown field"):
        sharded.search("sparse", 5, fields=["nope"])
    with pytest.raises(ValueError, match="shards must be a positive integer"):
        build_sharded(tmp_path / "x", 0, corpus=built[1], model="bm25")
    small = tmp_path / "two.jsonl"
    small.write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": "y"}\n')
    with pytest.raises(DataError, match="empty: use fewer than 8 shards"):
        build_sharded(tmp_path / "x", 8, corpus=small, model="bm25", show_progress_bar=False)
    assert not (tmp_path / "x").exists()  # nothing written
    with pytest.raises(IndexFormatError, match="not a sharded index"):
        ShardedRetriever(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(IndexFormatError, match="damaged"):
        ShardedRetriever(tmp_path)


def test_writes_go_to_the_shard_owning_the_id(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", n=90, seed=1)
    build_sharded(tmp_path / "sh", 3, corpus=corpus, model="bm25", show_progress_bar=False)
    sharded = ShardedRetriever(tmp_path / "sh", timeout_s=20)
    try:
        new = [{"id": f"new{i}", "text": f"zebra{i} sparse", "metadata": {"year": 1990}} for i in range(6)]
        assert sharded.add(new) == 6
        with pytest.raises(DataError, match="exists already"):
            sharded.add([{"id": "new9", "text": "zebra9"}, {"id": "d3", "text": "again"}])
        sharded.upsert([{"id": "d4", "text": "ocelot"}])
        assert sharded.delete(["d5", "d6", "missing"]) == {"deleted": ["d5", "d6"], "not_found": ["missing"]}
        assert sharded.search("zebra0", 5).ids == []  # buffered, not committed
        with pytest.raises(DataError, match="needs the approx part"):  # the shards' own error, as one index raises it
            sharded.search("zebra0", 5, mode="approx")
        generations = sharded.commit()
        assert set(generations) <= set(sharded.shard_names) and generations
        for i in range(6):
            assert sharded.search(f"zebra{i}", 5).ids == [f"new{i}"]
        assert sharded.search("zebra9", 5).ids == []  # the rejected batch buffered nothing
        assert sharded.search("ocelot", 5).ids == ["d4"] and sharded.get("d4").text == "ocelot"
        assert sharded.get("d5") is None and sharded.get("d6") is None
        assert sharded.num_docs == 90 + 6 - 2
        layout = Layout.read(tmp_path / "sh")
        for i in range(6):
            with Collection.open(layout.shard_path(shard_of(f"new{i}", 3))) as owner:
                assert owner.get(f"new{i}") is not None
        hits = sharded.search("sparse", ALL, filter={"year": 1990})
        assert sorted(hits.ids) == [f"new{i}" for i in range(6)]
    finally:
        sharded.close()


def test_a_killed_shard_is_never_silently_missing(built):
    """Kill a shard actor's process (a worker this test's cluster started) while searches run:
    every answer is complete and equal to the unsharded one, or raises ShardsUnavailable naming
    the shard, or (allow_partial) is flagged partial with exactly the other shards' top k. Ray
    then restarts the actor, which reloads its shard."""
    one = built[2]
    sharded = ShardedRetriever(built[0] / "three", timeout_s=20, max_restarts=2)
    try:
        k = 10
        full = one.search_batch(QUERIES, ALL)
        reference = [r.ids[:k] for r in full]
        victim = 1
        without = [[d for d in r.ids if shard_of(d, 3) != victim][:k] for r in full]
        pid = sharded.ping()[victim]["pid"]
        seen = {"complete": 0, "error": 0, "partial": 0}
        stop = threading.Event()

        def search_loop(allow_partial: bool) -> None:
            while not stop.is_set():
                try:
                    got = sharded.search_batch(QUERIES, k, allow_partial=allow_partial)
                except ShardsUnavailable as e:
                    assert not allow_partial and e.missing.keys() == {"shard-001"} and "shard-001" in str(e)
                    seen["error"] += 1
                    continue
                if got[0].partial:
                    assert all(r.missing == ("shard-001",) for r in got)
                    assert [r.ids for r in got] == without
                    seen["partial"] += 1
                else:
                    assert [r.ids for r in got] == reference and not any(r.partial for r in got)
                    seen["complete"] += 1

        threads = [threading.Thread(target=search_loop, args=(p,)) for p in (False, True)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if sharded.ping()[victim]["pid"] != pid:
                    break
            except ShardsUnavailable:
                pass
            time.sleep(0.2)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert seen["error"] >= 1 and seen["partial"] >= 1 and seen["complete"] >= 2, seen
        assert sharded.ping()[victim]["pid"] != pid  # restarted, its shard reloaded:
        assert [r.ids for r in sharded.search_batch(QUERIES, k)] == reference
        kill_for_good(sharded, victim, QUERIES, k, reference)  # the error stays clear:
        with pytest.raises(ShardsUnavailable, match="shard-001"):
            sharded.search_batch(QUERIES, k)
        assert [r.ids for r in sharded.search_batch(QUERIES, k, allow_partial=True)] == without
    finally:
        sharded.close()


def kill_for_good(sharded: ShardedRetriever, s: int, queries: list[str], k: int, reference: list[list[str]]) -> None:
    """ray.kill shard ``s`` (no restart) and search until a search says it is gone: until its
    process exits its connection may still answer, but only completely, never with fewer hits."""
    ray.kill(sharded.actors[s], no_restart=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            got = sharded.search_batch(queries, k)
        except ShardsUnavailable as e:
            assert list(e.missing) == [sharded.shard_names[s]]
            return
        assert [r.ids for r in got] == reference and not any(r.partial for r in got)
        time.sleep(0.02)
    raise AssertionError(f"shard {s} still answers 30 s after ray.kill")


def test_rest_answers_503_while_a_shard_is_down(built):
    """Over REST a missing shard is a 503 with Retry-After naming it, never a shorter list."""
    from fastapi.testclient import TestClient

    from lsr.service import create_app

    sharded = ShardedRetriever(built[0] / "three", timeout_s=60, max_restarts=0)
    try:
        with TestClient(create_app(sharded)) as client:
            ok = client.post("/search", json={"query": "shard merge score", "k": 5})
            assert ok.status_code == 200 and ok.json()["ids"] == built[2].search("shard merge score", 5).ids
            kill_for_good(sharded, 2, ["shard merge score"], 5, [built[2].search("shard merge score", 5).ids])
            down = client.post("/search", json={"query": "shard merge score", "k": 5})
            assert down.status_code == 503 and down.headers["Retry-After"] == "1"
            assert down.json()["error"]["type"] == "unavailable" and "shard-002" in down.json()["error"]["message"]
    finally:
        sharded.close()


def test_ray_build_equals_in_process_build(tmp_path):
    """Encoding on two Ray actors and writing shards in Ray tasks gives the in-process layout."""
    corpus = write_corpus(tmp_path / "corpus.jsonl", n=300, seed=2)
    local = build_sharded(tmp_path / "local", 2, corpus=corpus, model="splade-tiny", show_progress_bar=False)
    on_ray = build_sharded(tmp_path / "ray", 2, corpus=corpus, model="splade-tiny", ray="local", workers=2, show_progress_bar=False)
    assert on_ray["docs_per_shard"] == local["docs_per_shard"] and on_ray["workers"] == 2
    for s in range(2):
        with Collection.open(tmp_path / "local" / f"shard-00{s}") as a, Collection.open(tmp_path / "ray" / f"shard-00{s}") as b:
            ia, ib = a.snapshot().indexes[0], b.snapshot().indexes[0]
            assert ia.doc_ids == ib.doc_ids
            np.testing.assert_array_equal(ia.forward_indptr, ib.forward_indptr)
            np.testing.assert_allclose(ia.forward_weights, ib.forward_weights, atol=1e-5)


def test_dense_and_hybrid_sharded(tmp_path):
    pytest.importorskip("faiss", reason="the dense extra (faiss) is not installed")
    corpus = write_corpus(tmp_path / "corpus.jsonl", n=120, seed=3, repeats=False)
    opts = dict(corpus=corpus, model="bm25", dense_model="all-MiniLM-L6-v2", show_progress_bar=False)
    one, _ = build_index(tmp_path / "one", **opts)
    build_sharded(tmp_path / "sh", 2, **opts)
    sharded = ShardedRetriever(tmp_path / "sh", timeout_s=20)
    try:
        # faiss's float inner products vary in their last bits with a vector's position in the
        # matrix: scores agree to float rounding (no repeated texts here, so no near-ties swap)
        for mode, knobs in [("dense", {}), ("hybrid", {}), ("hybrid", {"dense_weight": 0.3}), ("hybrid", {"depth": 20})]:
            a, b = one.search_batch(QUERIES, 10, mode=mode, **knobs), sharded.search_batch(QUERIES, 10, mode=mode, **knobs)
            assert [r.ids for r in a] == [r.ids for r in b], (mode, knobs)
            np.testing.assert_allclose([r.scores for r in a], [r.scores for r in b], rtol=1e-5)
            assert all(r.dense_fraction == 1.0 for r in b)
        with pytest.raises(DataError, match="selective"):
            sharded.search("sparse", 5, mode="selective")
    finally:
        sharded.close()


def test_cli_index_search_info_and_serve(tmp_path):
    """`lsr index --shards`, `lsr search`, `lsr info` and `lsr serve` on a sharded directory, each in
    its own process (which starts its own loopback Ray), as a user runs them."""
    corpus = write_corpus(tmp_path / "corpus.jsonl", n=60, seed=4)
    out = tmp_path / "sh"
    summary = json.loads(run_cli("index", "--corpus", str(corpus), "--model", "bm25", "--out", str(out), "--shards", "2").stdout)
    assert summary["shards"] == 2 and sum(summary["docs_per_shard"]) == 60
    one, _ = build_index(tmp_path / "one", corpus=corpus, model="bm25", show_progress_bar=False)
    expected = one.search("shard merge score", 5)
    hits = json.loads(run_cli("search", "--index", str(out), "--query", "shard merge score", "-k", "5", "--json").stdout)["hits"]
    assert [h["id"] for h in hits] == expected.ids
    info = json.loads(run_cli("info", "--index", str(out), "--json").stdout)
    assert info["num_shards"] == 2 and info["num_docs"] == 60 and [s["name"] for s in info["shards"]] == ["shard-000", "shard-001"]
    assert "give --shards N" in run_cli("index", "--corpus", str(corpus), "--out", str(tmp_path / "x"), "--ray", "local", check=False).stderr
    more = tmp_path / "more.jsonl"
    more.write_text('{"_id": "n1", "text": "wombat shard"}\n{"_id": "n2", "text": "wombat merge"}\n')
    assert json.loads(run_cli("add", "--index", str(out), "--corpus", str(more)).stdout)["num_docs"] == 62
    assert json.loads(run_cli("delete", "--index", str(out), "--ids", "n1", "nope").stdout)["not_found"] == ["nope"]
    hits = json.loads(run_cli("search", "--index", str(out), "--query", "wombat", "--json").stdout)["hits"]
    assert [h["id"] for h in hits] == ["n2"]
    run_cli("delete", "--index", str(out), "--ids", "n2")
    import httpx

    proc, base = start_server(["serve", "--index", str(out), "--port", str(free_port())], tmp_path / "serve.log")
    try:
        r = httpx.post(f"{base}/search", json={"query": "shard merge score", "k": 5}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["ids"] == expected.ids and r.json()["scores"] == pytest.approx(expected.scores, rel=1e-12)
        assert httpx.get(f"{base}/health", timeout=10).json()["num_docs"] == 60
    finally:
        stop_server(proc)


def test_wire_frames_round_trip_exactly_and_refuse_malformed_ones():
    """Arrays keep dtype, shape and every bit; JSON values stay as they were; anything else is a WireError."""
    scores = np.array([1 / 3, np.nextafter(1.0, 2.0), -0.0, 1e-310])
    obj = {"keys": np.array([5, 1 << 50], np.int64), "scores": scores, "ids": ["a", "é\n"], "x": [np.float32(0.5), None, {"n": 1}],
           "m": np.zeros((2, 3), np.float32), "empty": np.zeros(0, np.int32)}
    frame = wire.pack(wire.REPLY, obj)
    magic, version, kind, doc, size = wire.HEADER.unpack(frame[:wire.HEADER.size])
    assert (magic, version, kind, doc + size) == (wire.MAGIC, wire.VERSION, wire.REPLY, len(frame) - wire.HEADER.size)
    got = wire.unpack(frame[wire.HEADER.size:], size)
    assert got["scores"].tobytes() == scores.tobytes() and got["keys"].dtype == np.int64 and got["keys"].tolist() == [5, 1 << 50]
    assert got["m"].shape == (2, 3) and got["empty"].dtype == np.int32 and got["ids"] == ["a", "é\n"]
    assert got["x"] == [0.5, None, {"n": 1}]
    with pytest.raises(TypeError, match="do not go on the wire"):
        wire.pack(wire.REPLY, {"a": np.array(["x"], dtype=object)})
    body = frame[wire.HEADER.size:]
    with pytest.raises(wire.WireError, match="runs past"):
        wire.unpack(body[:-8], size - 8)
    with pytest.raises(wire.WireError, match="malformed frame"):
        wire.unpack(b"[[\"|O8\",[1]]]\n{}" + bytes(8), 8)
    with pytest.raises(wire.WireError, match="malformed frame"):
        wire.unpack(b"\xff\xfe" + body[2:], size)
    for data, why in [(b"GET / HTTP/1.1\r\n\r\n", "not an lsr shard connection"),
                      (wire.HEADER.pack(wire.MAGIC, wire.VERSION + 1, wire.REQUEST, 2, 0) + b"\n0",
                       f"frame version {wire.VERSION + 1}, this lsr speaks {wire.VERSION}")]:
        a, b = socket.socketpair()
        with a, b:
            a.sendall(data)
            with pytest.raises(wire.WireError, match=why):
                wire.recv_frame(b)


def test_binary_frames_round_trip_exactly_and_refuse_malformed_ones():
    """SEARCH / HITS frames keep their fields and every bit of their arrays; a damaged one is a WireError saying how."""
    arrays = [np.array([0, 2, 3], np.int64), np.array([7, -1, 1 << 30], np.int32), np.array([0.5, 1 / 3, -0.0], np.float32),
              np.array([np.nan, 1 / 3, 1e-310]), np.zeros(0, np.uint8)]
    frame = wire.pack_arrays(wire.SEARCH, (1 << 64) - 1, arrays, k=1000, threads=2, mode=2)
    magic, version, kind, doc, size = wire.HEADER.unpack(frame[:wire.HEADER.size])
    assert (magic, version, kind, doc + size) == (wire.MAGIC, wire.VERSION, wire.SEARCH, len(frame) - wire.HEADER.size)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(frame)
        kind, got = wire.recv_frame(b)
    assert kind == wire.SEARCH and (got.seq, got.k, got.threads, got.mode) == ((1 << 64) - 1, 1000, 2, 2)
    assert [(g.dtype, g.tobytes()) for g in got.arrays] == [(x.dtype, x.tobytes()) for x in arrays]
    with pytest.raises(TypeError, match="do not go in a binary frame"):
        wire.pack_arrays(wire.HITS, 0, [np.zeros(2, ">i8")])
    body = frame[wire.HEADER.size:]
    for data, n, why in [(body[:-4], size - 4, "runs past"), (body + bytes(8), size + 8, "array bytes left over"),
                         (body[:wire.FIXED.size - 1], 0, "malformed frame"), (body[:wire.FIXED.size + 1], 0, "need"),
                         (body[:wire.FIXED.size] + b"\x09" + body[wire.FIXED.size + 1:], size, "malformed frame")]:  # dtype code 9
        with pytest.raises(wire.WireError, match=why):
            wire.unpack_arrays(data, n)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(wire.HEADER.pack(wire.MAGIC, wire.VERSION + 1, wire.SEARCH, doc, size) + body)
        with pytest.raises(wire.WireError, match=f"frame version {wire.VERSION + 1}, this lsr speaks {wire.VERSION}"):
            wire.recv_frame(b)


def arrays_of(frame: bytes) -> wire.Arrays:
    """What a binary frame holds, read as the listener reads it."""
    return wire.unpack_arrays(frame[wire.HEADER.size:], wire.HEADER.unpack(frame[:wire.HEADER.size])[4])


def test_a_plain_search_goes_binary_and_the_rest_as_json():
    """A plain sparse top-k becomes a SEARCH frame that gives the shard back the same request
    (knobs and terms past the build vocabulary included); filters, stored fields, dense and
    two-part searches go as JSON; hits come back as they were (ids of any text, several queries, none)."""
    queries = {"indptr": np.array([0, 2, 3]), "indices": np.array([4, 9], np.int32)[[0, 1, 1]], "values": np.array([0.5, 2.0, 1.0], np.float32),
               "late": [], "dense": None}
    plain = {"queries": queries, "k": 7, "mode": "exact", "knobs": {}, "threads": None, "filter": None, "fields": None, "snippet": None}
    for mode, knobs, threads, late in [("exact", {}, None, []), ("exact", {"strategy": "superblock", "alpha": 0.5}, 1, [(9, "zébra")]),
                                       ("approx", {"query_cut": 3, "heap_factor": 0.25}, 2, [(4, "a"), (9, "")]),
                                       ("exhaustive", {"beta": 1.0}, None, [])]:
        request = {**plain, "queries": {**queries, "late": late}, "mode": mode, "knobs": knobs, "threads": threads}
        got = arrays_of(sharded_retriever._search_frame(5, [request]))
        back = sharded_retriever._request_of(got)
        assert got.seq == 5 and {k: back[k] for k in ("k", "mode", "knobs", "threads")} == {k: request[k] for k in ("k", "mode", "knobs", "threads")}
        assert all(type(back["knobs"][k]) is type(v) for k, v in knobs.items())
        assert all(np.array_equal(back["queries"][k], queries[k]) for k in ("indptr", "indices", "values"))
        assert back["queries"]["late"] == late
    for change in [{"filter": {"year": 2000}}, {"fields": ["text"]}, {"mode": "dense"}, {"queries": {**queries, "dense": np.zeros((2, 4), np.float32)}}]:
        assert sharded_retriever._search_frame(5, [{**plain, **change}]) is None, change
    assert sharded_retriever._search_frame(5, [plain, plain]) is None
    hits = [sharded_retriever.ShardHits(np.array([3, 1 << 50], np.int64), np.array([2.5, 1 / 3]), ["é\n", "\ud800x"], None, None),
            sharded_retriever.ShardHits(np.zeros(0, np.int64), np.zeros(0), [], None, None),
            sharded_retriever.ShardHits(np.array([8], np.int64), np.array([-0.0]), ["plain"], None, None)]
    frame = wire.pack_arrays(wire.HITS, 5, sharded_retriever._hits_arrays(hits))
    back = sharded_retriever._hits_of(arrays_of(frame).arrays)
    assert [(h.keys.tolist(), h.scores.tobytes(), h.ids, h.fields, h.dense_fraction) for h in back] == \
        [(h.keys.tolist(), h.scores.tobytes(), h.ids, None, None) for h in hits]
    assert sharded_retriever._hits_of(sharded_retriever._hits_arrays([])) == []
    with pytest.raises(wire.WireError, match="malformed HITS frame"):
        sharded_retriever._hits_of(sharded_retriever._hits_arrays(hits)[:4])
    arrays = sharded_retriever._hits_arrays(hits)
    with pytest.raises(wire.WireError, match="malformed HITS frame: 4 hits, 3 keys, 3 scores, 3 ids"):
        sharded_retriever._hits_of([np.array([2, 0, 2]), *arrays[1:]])
    with pytest.raises(wire.WireError, match="malformed HITS frame: 2 strings ending at"):
        sharded_retriever._hits_of([*arrays[:4], arrays[4][:2]])
    with pytest.raises(wire.WireError, match="malformed HITS frame: 'utf-8' codec can't decode"):
        sharded_retriever._hits_of([*arrays[:3], np.frombuffer(b"\xff" * len(arrays[3]), np.uint8), arrays[4]])


def test_binary_searches_are_answered_in_step(built, sharded, monkeypatch):
    """The plain searches above went binary; a shard answers a SEARCH frame only after the token,
    with the frame's own sequence number, and a reply out of step is an error, never taken as
    the answer (the connection is dropped, so the next search is answered right)."""
    sent = []
    frame_of = sharded_retriever._search_frame
    monkeypatch.setattr(sharded_retriever, "_search_frame", lambda seq, requests: sent.append(frame_of(seq, requests)) or sent[-1])
    reference = built[2].search_batch(QUERIES, 10)
    same(sharded.search_batch(QUERIES, 10), reference)
    assert sent and sent[-1] is not None  # the plain search went as a SEARCH frame
    address = tuple(ray.get(sharded.actors[0].address.remote()))
    with socket.create_connection(address[:2], timeout=10) as raw:
        raw.sendall(sent[-1])
        kind, reply = wire.recv_frame(raw)
        assert kind == wire.REFUSED and "must start with HELLO and the token" in reply["error"]
    with wire.connect(address, 10) as raw:
        seq = arrays_of(sent[-1]).seq
        raw.sendall(sent[-1])
        kind, reply = wire.recv_frame(raw)
        assert kind == wire.HITS and reply.seq == seq
    monkeypatch.setattr(sharded_retriever, "_search_frame", lambda seq, requests: frame_of(seq + 1, requests))
    with pytest.raises(wire.WireError, match="answered out of step"):
        sharded.search_batch(QUERIES, 10)
    monkeypatch.setattr(sharded_retriever, "_search_frame", frame_of)
    same(sharded.search_batch(QUERIES, 10), reference)


def test_a_shard_refuses_malformed_frames_and_keeps_serving(built, sharded):
    """A shard's listener answers a bad frame REFUSED with why and closes that connection
    only; a connection without the actor's token gets no answers."""
    address = tuple(ray.get(sharded.actors[0].address.remote()))
    # each opening is read to its end (bytes left unread would make the close a reset)
    for opening, why in [(b"\x00" * wire.HEADER.size, "not an lsr shard connection"),
                         (wire.pack(wire.HELLO, {"token": "guess"}), "must start with HELLO and the token"),
                         (wire.pack(wire.REQUEST, []), "must start with HELLO and the token")]:
        with socket.create_connection(address[:2], timeout=10) as raw:
            raw.sendall(opening)
            kind, reply = wire.recv_frame(raw)
            assert kind == wire.REFUSED and why in reply["error"]
            assert raw.recv(1) == b""  # closed
    with wire.connect(address, 10) as raw:  # introduced, then a damaged request
        raw.sendall(wire.pack(wire.REQUEST, [])[:wire.HEADER.size] + b"\xff" * 5)  # its 5 bytes of JSON, not UTF-8
        kind, reply = wire.recv_frame(raw)
        assert kind == wire.REFUSED and "malformed frame" in reply["error"]
    same(sharded.search_batch(QUERIES, 10), built[2].search_batch(QUERIES, 10))
