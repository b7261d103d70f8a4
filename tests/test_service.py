"""The HTTP API in-process (FastAPI TestClient): every endpoint, every validation error, auth, limits."""

import concurrent.futures
import re
import time

import pytest
from fastapi.testclient import TestClient
from service_fixtures import TINY_DOCS, adi_index_dir, tiny_index_dir

from lsr.errors import IndexFormatError
from lsr.retrieval import Retriever
from lsr.index.dense import KIND_KNOBS
from lsr.retrieval.modes import MODES, all_knobs
from lsr.service import Limits, create_app
from lsr.service.app import MAX_BATCH, MAX_EXPLAIN_K, MAX_K, MAX_QUERY_CHARS, MAX_TERM_CHARS, MAX_TERMS


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(tiny_index_dir())) as c:
        yield c


@pytest.fixture(scope="module")
def adi():
    with TestClient(create_app(adi_index_dir())) as c:
        yield c


def error_of(response, status: int, kind: str) -> dict:
    """The error body, after checking the status and the stable shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "details"}
    assert body["error"]["type"] == kind and body["error"]["message"]
    return body["error"]


def validation_error(response, loc: list | None = None) -> dict:
    err = error_of(response, 422, "validation_error")
    if loc is not None:
        assert [d["loc"] for d in err["details"]] == [loc], err
    return err


# ---- /search -------------------------------------------------------------------------------
def test_vector_search_ranks_and_echoes_settings(client):
    r = client.post("/search", json={"vector": {"apple": 1.0, "pie": 1.0}, "k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ids"] == ["d1", "d3"]
    assert body["scores"] == pytest.approx([1.5, 0.75], abs=1e-3)
    assert body["settings"] == {"mode": "exact", "k": 2, "knobs": {}}
    assert body["took_ms"] >= 0 and body["explanations"] is None


def test_search_matches_in_process_index(client):
    index = Retriever.load(tiny_index_dir())
    query = {"apple": 0.3, "tart": 0.1, "cherry": 2.0}
    expected = index.search(query, 10)
    body = client.post("/search", json={"vector": query, "k": 10}).json()
    assert body["ids"] == expected.ids and body["scores"] == expected.scores


@pytest.mark.parametrize("vector", [{}, {"not-in-vocab": 1.0}, {"apple": 0.0}])
def test_query_matching_nothing_returns_no_hits(client, vector):
    r = client.post("/search", json={"vector": vector})
    assert r.status_code == 200, r.text
    assert r.json()["ids"] == [] and r.json()["scores"] == []


def test_k_beyond_the_collection_returns_every_match(client):
    assert client.post("/search", json={"vector": {"pie": 1.0}, "k": MAX_K}).json()["ids"] == ["d3", "d1"]


def test_explain_contributions_sum_to_the_score(client):
    body = client.post("/search", json={"vector": {"apple": 0.7, "pie": 1.3, "tart": 0.2}, "k": 3, "explain": True}).json()
    assert len(body["explanations"]) == len(body["ids"]) == 3
    for score, terms in zip(body["scores"], body["explanations"]):
        assert terms and sum(t["contribution"] for t in terms) == pytest.approx(score, rel=1e-5)
        for t in terms:
            assert t["contribution"] == pytest.approx(t["query_weight"] * t["doc_weight"])
    assert {t["term"] for t in body["explanations"][0]} <= {"apple", "pie", "tart"}


def test_text_query_without_a_model_is_a_clear_422(client):
    err = error_of(client.post("/search", json={"query": "apple pie"}), 422, "invalid_input")
    assert "term weights" in err["message"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"vector": {"a": 1}, "k": 0}, ["k"]),
        ({"vector": {"a": 1}, "k": MAX_K + 1}, ["k"]),
        ({"vector": {"a": 1}, "k": "ten"}, ["k"]),
        ({"vector": {"a": 1}, "k": 2.5}, ["k"]),
        ({"vector": {"a": 1}, "mode": "fuzzy"}, ["mode"]),
        ({"vector": {"a": 1}, "explain": "maybe"}, ["explain"]),
        ({"query": ""}, ["query"]),
        ({"query": "x" * (MAX_QUERY_CHARS + 1)}, ["query"]),
        ({"query": 42}, ["query"]),
        ({"vector": {f"t{i}": 1.0 for i in range(MAX_TERMS + 1)}}, ["vector"]),
        ({"vector": {"a": -1.0}}, ["vector", "a"]),
        ({"vector": {"a": "heavy"}}, ["vector", "a"]),
        ({"vector": {"x" * (MAX_TERM_CHARS + 1): 1.0}}, ["vector", "x" * (MAX_TERM_CHARS + 1), "[key]"]),
        ({"vector": ["a", "b"]}, ["vector"]),
        ({"vector": {"a": 1}, "colour": "red"}, ["colour"]),
        ({"vector": {"a": 1}, "knobs": "fast"}, ["knobs"]),
    ],
)
def test_invalid_search_fields_are_422_naming_the_field(client, body, loc):
    err = validation_error(client.post("/search", json=body), loc)
    assert err["message"].startswith(".".join(map(str, loc)) + ":")


@pytest.mark.parametrize("body", [{}, {"k": 3}, {"query": "apple", "vector": {"apple": 1.0}}])
def test_exactly_one_of_query_or_vector(client, body):
    err = validation_error(client.post("/search", json=body), ["body"])
    assert err["details"][0]["type"] == "query_or_vector" and '"query"' in err["message"]


def test_null_query_counts_as_absent(client):
    assert client.post("/search", json={"query": None, "vector": {"apple": 1.0}}).status_code == 200


def test_non_finite_weight_is_rejected(client):
    r = client.post("/search", content=b'{"vector": {"apple": NaN}}', headers={"content-type": "application/json"})
    validation_error(r, ["vector", "apple"])


@pytest.mark.parametrize("flt, where", [
    (b'{"a": 1' + b"0" * 400 + b"}", "filter.a"),  # an integer no float64 holds: a 422, not a 500
    (b'{"a": {"gt": 1' + b"0" * 400 + b"}}", "filter.a.gt"),
    (b'{"a": [1]}', "filter.a"),
    (b'{"and": []}', "filter.and"),
    (b'{".a": 1}', "filter..a"),
])
def test_invalid_filters_are_422_naming_the_place(client, flt, where):
    r = client.post("/search", content=b'{"vector": {"apple": 1.0}, "filter": ' + flt + b"}", headers={"content-type": "application/json"})
    assert where + ":" in validation_error(r, ["body"])["message"]


def test_openapi_describes_the_filter_language(client):
    """The filter schema is the filter language (lsr.data.filters), not any object: a filter
    the schema allows is one the server takes (the fuzz test relies on it)."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("SearchRequest", "BatchSearchRequest"):
        assert schemas[name]["properties"]["filter"]["anyOf"] == [{"$ref": "#/components/schemas/MetadataFilter"}, {"type": "null"}]
    flt, condition = schemas["MetadataFilter"], schemas["FilterCondition"]
    assert set(flt["properties"]) == {"and", "or", "not"} and flt["minProperties"] == 1
    assert {"$ref": "#/components/schemas/FilterCondition"} in flt["additionalProperties"]["anyOf"]
    assert condition["additionalProperties"] is False and condition["minProperties"] == 1
    from lsr.data.filters import COMPARISONS

    assert set(condition["properties"]) == set(COMPARISONS)


def test_explain_depth_is_capped(client):
    err = validation_error(client.post("/search", json={"vector": {"a": 1}, "k": MAX_EXPLAIN_K + 1, "explain": True}), ["body"])
    assert str(MAX_EXPLAIN_K) in err["message"]


def test_malformed_json_is_422(client):
    r = client.post("/search", content=b'{"vector": ', headers={"content-type": "application/json"})
    err = validation_error(r, ["body"])
    assert err["details"][0]["type"] == "json_invalid" and err["message"].startswith("body: invalid JSON at character")


@pytest.mark.parametrize(
    ("mode", "knob", "message"),
    [
        ("exact", "budget", "mode 'exact' has no knob 'budget' (its knobs: strategy, alpha, beta)"),
        ("exhaustive", "alpha", "mode 'exhaustive' has no knob 'alpha' (its knobs: beta)"),
        ("approx", "beta", "mode 'approx' has no knob 'beta' (its knobs: query_cut, heap_factor)"),
    ],
)
def test_a_mode_takes_only_its_knobs(client, mode, knob, message):
    err = validation_error(client.post("/search", json={"vector": {"a": 1}, "mode": mode, "knobs": {knob: 0.5}}), ["body"])
    assert err["message"] == f"body: {message}" and err["details"][0]["type"] == "knob"


@pytest.mark.parametrize(
    ("mode", "knobs", "message"),
    [
        ("exact", {"alpha": 0}, "alpha must be in (0, 1], got 0.0"),
        ("exact", {"alpha": 1.01}, "alpha must be in (0, 1], got 1.01"),
        ("exact", {"alpha": "high"}, "alpha must be a number in (0, 1], got 'high'"),
        ("exhaustive", {"beta": 1.5}, "beta must be in (0, 1], got 1.5"),
        ("approx", {"query_cut": 2.5}, "query_cut must be a whole number in [1, 65536], got 2.5"),
        ("approx", {"query_cut": 0}, "query_cut must be in [1, 65536], got 0.0"),
        ("approx", {"heap_factor": 2}, "heap_factor must be in [0, 1], got 2.0"),
    ],
)
def test_knob_ranges(client, mode, knobs, message):
    err = validation_error(client.post("/search", json={"vector": {"apple": 1}, "mode": mode, "knobs": knobs}), ["body"])
    assert err["message"] == f"body: {message}"


def test_knobs_within_range_reach_the_search(client):
    index = Retriever.load(tiny_index_dir())
    query = {"apple": 1.0, "pie": 0.5, "tart": 0.1}
    for knobs in ({"alpha": 1}, {"alpha": 0.5, "beta": 0.5}, {"beta": 1.0}):
        r = client.post("/search", json={"vector": query, "knobs": knobs})
        assert r.status_code == 200, r.text
        expected = index.search(query, 10, **knobs)
        assert (r.json()["ids"], r.json()["scores"]) == (expected.ids, expected.scores)
        assert r.json()["settings"]["knobs"] == {k: float(v) for k, v in knobs.items()}
    # beta keeps the heaviest ceil(beta x n) query terms: with 0.5, "apple" and "pie" of three
    pruned = client.post("/search", json={"vector": query, "knobs": {"beta": 0.5}}).json()
    assert pruned["ids"] == ["d1", "d3", "d2"] and pruned["scores"] == pytest.approx([1.25, 0.375, 0.25], abs=1e-3)
    assert "d2" in client.post("/search", json={"vector": {"tart": 1.0, "cherry": 0.1}, "knobs": {"beta": 1.0}}).json()["ids"]
    assert client.post("/search", json={"vector": {"tart": 1.0, "cherry": 0.1}, "knobs": {"beta": 0.5}}).json()["ids"] == ["d2"]
    exhaustive = client.post("/search", json={"vector": query, "mode": "exhaustive"}).json()
    assert (exhaustive["ids"], exhaustive["settings"]) == (index.search(query, 10).ids, {"mode": "exhaustive", "k": 10, "knobs": {}})


def test_knob_values_of_the_wrong_json_type_name_the_knob(client):
    for value in ([1], {"x": 1}, True, None, "x" * 33):
        err = validation_error(client.post("/search", json={"vector": {"apple": 1}, "knobs": {"alpha": value}}))
        assert err["details"] and all(d["loc"][:2] == ["knobs", "alpha"] for d in err["details"]), (value, err)
        assert err["message"].startswith("knobs.alpha")


def test_a_mode_the_index_cannot_serve_is_a_clear_422(client):
    """The tiny index has no approx structure and no dense part."""
    err = error_of(client.post("/search", json={"vector": {"apple": 1}, "mode": "approx", "knobs": {"query_cut": 2}}), 422, "invalid_input")
    assert err["message"] == (f"mode 'approx' needs the approx part, which the index {tiny_index_dir()} lacks: "
                              "build it with `lsr index --approx` (or add it with `lsr tune`)")
    err = error_of(client.post("/search/batch", json={"queries": [{"query": "apple"}], "mode": "hybrid"}), 422, "invalid_input")
    assert err["message"].startswith(f"mode 'hybrid' needs the dense part, which the index {tiny_index_dir()} lacks")


def _search_request_schemas(spec: dict) -> dict[str, dict]:
    schemas = spec["components"]["schemas"]
    return {name: schemas[name] for name in ("SearchRequest", "BatchSearchRequest")}


def _enum(schema: dict, schemas: dict) -> list:
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
    return schema["enum"]


def test_openapi_modes_and_knobs_are_the_registrys(adi, client):
    """The request schema is derived from lsr.retrieval.modes.MODES: the same modes (those the
    loaded index can serve), and per mode exactly its knobs with their ranges, so the two cannot
    drift apart."""
    tiny = client.get("/openapi.json").json()  # no approx structure, no dense part
    for name, schema in _search_request_schemas(tiny).items():
        assert _enum(schema["properties"]["mode"], tiny["components"]["schemas"]) == ["exact", "exhaustive"], name
        assert [r["if"].get("properties", {}).get("mode", {}).get("const") or "exact" for r in schema["allOf"]] == ["exact", "exhaustive"]
    spec = adi.get("/openapi.json").json()  # the ADI index has every part; its dense part is flat
    schemas = spec["components"]["schemas"]
    flat = set(KIND_KNOBS.values())  # ef_search and nprobe tune hnsw and ivf parts only: not offered
    every_knob = [k for k in all_knobs() if k not in flat]
    for name, schema in _search_request_schemas(spec).items():
        assert _enum(schema["properties"]["mode"], schemas) == list(MODES), name
        assert schema["properties"]["mode"]["default"] == "exact"
        knobs_field = schema["properties"]["knobs"]
        assert list(knobs_field["properties"]) == list(every_knob) and knobs_field["additionalProperties"] is False, name
        per_mode = {}
        for rule in schema["allOf"]:
            when = rule["if"]
            if "anyOf" in when:  # the default mode applies when "mode" is absent too
                assert when["anyOf"][0] == {"not": {"required": ["mode"]}}
                when = when["anyOf"][1]
            mode = when["properties"]["mode"]["const"]
            assert mode not in per_mode, (name, mode)
            per_mode[mode] = rule["then"]["properties"]["knobs"]
        assert list(per_mode) == list(MODES), name
        for mode, knobs in per_mode.items():
            assert knobs["additionalProperties"] is False, (name, mode)
            assert list(knobs["properties"]) == [k for k in MODES[mode].knob_names if k not in flat], (name, mode)
            if {"fusion", "dense_weight"} <= set(MODES[mode].knob_names):  # a weight means linear fusion
                assert (knobs["if"], knobs["then"]) == ({"required": ["dense_weight"]}, {"properties": {"fusion": {"const": "linear"}}})
            else:
                assert "if" not in knobs, (name, mode)
            for knob in (k for k in MODES[mode].knobs if k.name not in flat):
                got = knobs["properties"][knob.name]
                assert got == knobs_field["properties"][knob.name], (name, mode, knob.name)
                if knob.choices:
                    assert got == {"type": "string", "enum": list(knob.choices)}
                else:
                    assert got["type"] == ("integer" if knob.integer else "number") and got["maximum"] == knob.hi
                    assert got["exclusiveMinimum" if knob.lo_open else "minimum"] == knob.lo
    assert _enum(schemas["SettingsUsed"]["properties"]["mode"], schemas) == list(MODES)
    assert set(MODES) == {"exact", "exhaustive", "approx", "dense", "hybrid", "selective"}
    assert MODES["exact"].knob_names == ("strategy", "alpha", "beta") and "dense_weight" in MODES["hybrid"].knob_names


def test_exact_alpha_is_block_max_pruning_and_dense_weight_is_no_exact_knob(client):
    r = client.post("/search", json={"vector": {"apple": 1.0, "pie": 1.0}, "mode": "exact", "knobs": {"alpha": 0.5}})
    assert r.status_code == 200, r.text
    assert r.json()["ids"] == ["d1", "d3", "d2"] and r.json()["settings"] == {"mode": "exact", "k": 10, "knobs": {"alpha": 0.5}}
    for path, body in (("/search", {"vector": {"apple": 1.0}}), ("/search/batch", {"queries": [{"vector": {"apple": 1.0}}]})):
        err = validation_error(client.post(path, json={**body, "mode": "exact", "knobs": {"dense_weight": 0.5}}), ["body"])
        assert err["message"] == "body: mode 'exact' has no knob 'dense_weight' (its knobs: strategy, alpha, beta)"


# ---- /search/batch -------------------------------------------------------------------------
def test_batch_answers_each_query_in_order(client):
    queries = [{"vector": {"apple": 1.0}}, {"vector": {}}, {"vector": {"pie": 1.0, "cherry": 5.0}}]
    r = client.post("/search/batch", json={"queries": queries, "k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["settings"] == {"mode": "exact", "k": 2, "knobs": {}}
    singles = [client.post("/search", json={**q, "k": 2}).json() for q in queries]
    assert [(h["ids"], h["scores"]) for h in body["results"]] == [(s["ids"], s["scores"]) for s in singles]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"queries": []}, ["queries"]),
        ({"queries": [{"vector": {"a": 1}}] * (MAX_BATCH + 1)}, ["queries"]),
        ({"queries": [{"vector": {"a": 1}}, {"vector": {"a": 1}, "extra": 1}]}, ["queries", 1, "extra"]),
        ({"queries": [{"vector": {"a": 1}}], "explain": True}, ["explain"]),
        ({"queries": [{"vector": {"a": 1}}], "k": 0}, ["k"]),
        ({"queries": [{"vector": {"a": 1}, "k": 3}]}, ["queries", 0, "k"]),
        ({"queries": [{}]}, ["queries", 0]),
        ({"query": "apple"}, ["queries"]),
    ],
)
def test_invalid_batches_are_422(client, body, loc):
    r = client.post("/search/batch", json=body)
    err = validation_error(r)
    assert loc in [d["loc"] for d in err["details"]], err


# ---- /encode, /stats, /health --------------------------------------------------------------
def test_encode_needs_a_model(client):
    error_of(client.post("/encode", json={"texts": ["apple"]}), 422, "invalid_input")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"texts": []}, ["texts"]),
        ({"texts": ["a"] * (MAX_BATCH + 1)}, ["texts"]),
        ({"texts": "apple"}, ["texts"]),
        ({"texts": ["a"], "kind": "passage"}, ["kind"]),
        ({"texts": ["a"], "top": 0}, ["top"]),
        ({"texts": ["a"], "lang": "en"}, ["lang"]),
    ],
)
def test_invalid_encode_requests_are_422(client, body, loc):
    validation_error(client.post("/encode", json=body), loc)


def test_health(client):
    assert client.get("/health").json() == {"status": "ok", "num_docs": len(TINY_DOCS)}


def test_stats_count_requests_and_report_latency():
    with TestClient(create_app(tiny_index_dir())) as c:
        for _ in range(3):
            c.post("/search", json={"vector": {"apple": 1.0}})
        c.post("/search", json={"k": 0})
        c.post("/search/batch", json={"queries": [{"vector": {"pie": 1.0}}] * 4})
        c.get("/nowhere")
        stats = c.get("/stats").json()
    assert stats["index"]["num_docs"] == len(TINY_DOCS) and stats["model"] is None
    assert stats["service"]["queries"] == {"exact": 7}
    search = stats["endpoints"]["/search"]
    assert (search["requests"], search["client_errors"], search["server_errors"]) == (4, 1, 0)
    lat = search["latency"]
    assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"] and lat["mean_ms"] > 0
    assert stats["endpoints"]["other"]["client_errors"] == 1


def test_not_ready_before_startup():
    c = TestClient(create_app(tiny_index_dir()))  # not entered: the lifespan (loading) has not run
    error_of(c.get("/health"), 503, "not_ready")
    error_of(c.post("/search", json={"vector": {"apple": 1.0}}), 503, "not_ready")


def test_bad_index_dir_fails_startup(tmp_path):
    with pytest.raises(IndexFormatError, match=re.escape(f"no index directory at {tmp_path / 'missing'}")):
        with TestClient(create_app(tmp_path / "missing")):
            pass
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match=re.escape(f"{tmp_path / 'empty'} is not an lsr index (no manifest.json)")):
        with TestClient(create_app(tmp_path / "empty")):
            pass


# ---- errors, limits, security --------------------------------------------------------------
def test_unknown_route_and_method_are_json(client):
    error_of(client.get("/nowhere"), 404, "not_found")
    err = error_of(client.get("/search"), 405, "method_not_allowed")
    assert "GET" in err["message"]


def test_internal_errors_are_json_without_internals(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret detail")

    retriever = Retriever.load(tiny_index_dir())
    with TestClient(create_app(retriever), raise_server_exceptions=False) as c:
        monkeypatch.setattr(retriever, "search_encoded", boom)  # after the startup's warm-up searches
        err = error_of(c.post("/search", json={"vector": {"apple": 1.0}}), 500, "internal_error")
        assert "secret" not in err["message"]
        assert c.get("/stats").json()["endpoints"]["/search"]["server_errors"] == 1


def test_body_over_the_limit_is_413():
    with TestClient(create_app(tiny_index_dir(), limits=Limits(max_body_bytes=1000))) as c:
        big = {"vector": {f"t{i}": 1.0 for i in range(200)}}
        error_of(c.post("/search", json=big), 413, "payload_too_large")
        # No Content-Length (chunked upload): the body is counted as it arrives.
        json_type = {"content-type": "application/json"}
        error_of(c.post("/search", content=iter([b'{"vector": {', b" " * 2000, b"}}"]), headers=json_type), 413, "payload_too_large")
        assert c.post("/search", content=iter([b'{"vector": ', b'{"apple": 1}}']), headers=json_type).status_code == 200
        assert c.get("/stats").json()["endpoints"]["/search"]["client_errors"] == 2


def test_api_key_guards_reads_but_not_health():
    with TestClient(create_app(tiny_index_dir(), api_key="s3cret")) as c:
        q = {"vector": {"apple": 1.0}}
        error_of(c.post("/search", json=q), 401, "unauthorized")
        error_of(c.post("/search", json=q, headers={"X-API-Key": "s3cre"}), 401, "unauthorized")
        error_of(c.get("/stats", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        error_of(c.post("/search/batch", json={"queries": [q]}), 401, "unauthorized")
        error_of(c.post("/encode", json={"texts": ["a"]}), 401, "unauthorized")
        assert c.post("/search", json=q, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/stats", headers={"X-API-Key": "s3cret"}).json()["service"]["api_key_required"] is True
        assert c.get("/health").status_code == 200 and c.head("/health").status_code == 200
        # the schema and docs are reads too: behind the key
        error_of(c.get("/openapi.json"), 401, "unauthorized")
        error_of(c.get("/docs"), 401, "unauthorized")
        assert "APIKeyHeader" in c.get("/openapi.json", headers={"X-API-Key": "s3cret"}).json()["components"]["securitySchemes"]
        assert "swagger" in c.get("/docs", headers={"X-API-Key": "s3cret"}).text.lower()


def test_public_reads_leave_search_open():
    with TestClient(create_app(tiny_index_dir(), api_key="s3cret", public_reads=True)) as c:
        assert c.post("/search", json={"vector": {"apple": 1.0}}).status_code == 200
        assert c.get("/openapi.json").status_code == 200 and c.get("/docs").status_code == 200


def test_cors_is_off_unless_origins_are_given():
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(tiny_index_dir())) as c:
        r = c.options("/search", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        assert "access-control-allow-origin" not in c.get("/health", headers={"Origin": "https://example.org"}).headers
    with TestClient(create_app(tiny_index_dir(), cors_origins=["https://example.org"])) as c:
        assert c.options("/search", headers=preflight).headers["access-control-allow-origin"] == "https://example.org"


def test_openapi_documents_every_endpoint_with_examples(client):
    spec = client.get("/openapi.json").json()
    assert {"/search", "/search/batch", "/encode", "/stats", "/health"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    for name in ("SearchRequest", "BatchSearchRequest", "EncodeRequest", "SearchResponse", "EncodeResponse", "ErrorResponse"):
        assert schemas[name].get("examples"), name
    assert schemas["SearchRequest"]["additionalProperties"] is False
    assert spec["paths"]["/search"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


def test_slow_searches_run_in_threads_and_do_not_block_the_event_loop(monkeypatch):
    retriever = Retriever.load(tiny_index_dir())
    search = retriever.search_encoded

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return search(*args, **kwargs)

    with TestClient(create_app(retriever, limits=Limits(max_concurrency=2))) as c:
        monkeypatch.setattr(retriever, "search_encoded", slow)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            start = time.perf_counter()
            searches = [pool.submit(c.post, "/search", json={"vector": {"apple": 1.0}}) for _ in range(2)]
            time.sleep(0.1)
            assert c.get("/health").status_code == 200
            health_done = time.perf_counter() - start
            assert all(f.result().status_code == 200 for f in searches)
            searches_done = time.perf_counter() - start
    assert health_done < 0.45  # answered while both searches were sleeping
    assert searches_done < 0.95  # the two searches overlapped


# ---- with a model (ADI, splade-tiny) --------------------------------------------------------
def test_text_search_and_explain(adi):
    body = adi.post("/search", json={"query": "computer information retrieval systems", "k": 5, "explain": True}).json()
    assert len(body["ids"]) == 5 and body["scores"] == sorted(body["scores"], reverse=True)
    for score, terms in zip(body["scores"], body["explanations"]):
        assert sum(t["contribution"] for t in terms) == pytest.approx(score, rel=1e-5)
    plain = adi.post("/search", json={"query": "computer information retrieval systems", "k": 5}).json()
    assert (plain["ids"], plain["scores"]) == (body["ids"], body["scores"])


def test_text_batch_matches_single_searches(adi):
    texts = ["indexing of documents", "automatic abstracting", "   "]
    batch = adi.post("/search/batch", json={"queries": [{"query": t} for t in texts], "k": 3}).json()["results"]
    for text, hits in zip(texts, batch):
        single = adi.post("/search", json={"query": text, "k": 3}).json()
        assert hits["ids"] == single["ids"] and hits["scores"] == pytest.approx(single["scores"], rel=1e-6)
    assert batch[2]["ids"] == []  # a blank text encodes to an empty vector


def test_encode_returns_readable_top_terms(adi):
    r = adi.post("/encode", json={"texts": ["information retrieval", "library catalogues"], "top": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "splade-tiny" and body["kind"] == "query" and len(body["vectors"]) == 2
    v = body["vectors"][0]
    assert len(v["terms"]) == 3 and v["num_terms"] >= 3
    assert "retrieval" in v["terms"] and list(v["terms"].values()) == sorted(v["terms"].values(), reverse=True)
    full = adi.post("/encode", json={"texts": ["information retrieval"]}).json()["vectors"][0]
    assert len(full["terms"]) == full["num_terms"] == v["num_terms"]
    doc = adi.post("/encode", json={"texts": ["information retrieval"], "kind": "document"}).json()
    assert doc["kind"] == "document" and doc["vectors"][0]["terms"]


def test_encoded_query_searches_like_its_text(adi):
    text = "evaluation of retrieval effectiveness"
    vector = adi.post("/encode", json={"texts": [text]}).json()["vectors"][0]["terms"]
    by_text = adi.post("/search", json={"query": text, "k": 5}).json()
    by_vector = adi.post("/search", json={"vector": vector, "k": 5}).json()
    assert by_vector["ids"] == by_text["ids"]


def test_stats_describe_the_model(adi):
    model = adi.get("/stats").json()["model"]
    assert model["name"] == "splade-tiny" and model["encoder"] == "SpladeEncoder" and model["vocab_size"] > 1000
    assert model["settings"]["query_max_length"] > 0


def test_encodings_keep_their_torch_thread_count_after_a_parallel_batch(monkeypatch):
    """Numba's parallel batch kernel resets the OpenMP thread count of the thread it ran on,
    which torch then uses: the service sets it back before every piece of work."""
    import torch

    retriever = Retriever.load(adi_index_dir())
    search, seen = retriever.search_encoded, []

    def recording(*args, **kwargs):  # runs right after the queries were encoded
        seen.append(torch.get_num_threads())
        return search(*args, **kwargs)

    with TestClient(create_app(retriever, limits=Limits(max_concurrency=1, encoder_threads=1))) as c:
        monkeypatch.setattr(retriever, "search_encoded", recording)
        for _ in range(2):
            assert c.post("/search/batch", json={"queries": [{"query": "library"}, {"query": "indexing"}]}).status_code == 200
            assert c.post("/search", json={"query": "library"}).status_code == 200
    assert seen == [1, 1, 1, 1]
