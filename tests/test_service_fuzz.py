"""Schema-driven fuzzing (schemathesis) of the API against its own OpenAPI schema: no 500s,
only documented status codes and response shapes, schema-valid requests accepted and
schema-violating ones rejected."""

import copy

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from service_fixtures import ADI_INDEX, adi_index_dir

from lsr.service import create_app

# The app loads ADI_INDEX at its first request, after the fixture below has built it; the
# schema itself needs no index, so collecting this module stays cheap.
APP = create_app(ADI_INDEX)
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    # A too-large body is a fine way to reject a schema-violating request, too.
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 405, 406, 413, 415, 422]}}}
)
# ef_search and nprobe tune a dense part of kind hnsw or ivf; ADI_INDEX's is flat and refuses
# both (a 422 naming the knob and the kind, tested in test_service_dense), and no one index
# serves both. So the fuzzed schema leaves them out: sending one is then schema-violating
# data, which the flat index must still reject.
DENSE_KIND_KNOBS = ("ef_search", "nprobe")


def _without_knobs(node, names: tuple[str, ...]) -> int:
    """Drop ``names`` from every ``knobs`` object schema below ``node``; returns how many were dropped."""
    dropped = 0
    if isinstance(node, dict):
        knobs = node.get("knobs")
        if isinstance(knobs, dict) and isinstance(knobs.get("properties"), dict):
            dropped += sum(knobs["properties"].pop(name, None) is not None for name in names)
        dropped += sum(_without_knobs(value, names) for value in node.values())
    elif isinstance(node, list):
        dropped += sum(_without_knobs(value, names) for value in node)
    return dropped


SPEC = copy.deepcopy(APP.openapi())  # the app keeps serving its own, whole schema
# each request model (single, batch): from the knobs field and from the dense and hybrid modes' rules
assert _without_knobs(SPEC, DENSE_KIND_KNOBS) == 2 * 3 * len(DENSE_KIND_KNOBS)
schema = schemathesis.openapi.from_dict(SPEC, config=CONFIG)
schema.app = APP  # call the app in-process, as schemathesis.openapi.from_asgi would


@pytest.fixture(scope="module", autouse=True)
def _adi_index():
    adi_index_dir()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    case.call_and_validate()
