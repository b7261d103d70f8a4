"""Schema-driven fuzzing (schemathesis) of the API against its own OpenAPI schema: no 500s,
only documented status codes and response shapes, schema-valid requests accepted and
schema-violating ones rejected.

The schema is the one the app serves once its index is loaded: it offers only the modes and
knobs that index serves (ADI_INDEX's dense part is flat, so ``ef_search`` and ``nprobe``, which
tune hnsw and ivf parts, are not offered and sending one is schema-violating data the index
must reject). ``LSR_SCHEMA_EXAMPLES`` raises the examples per operation (300 for a release).
"""

import json
import os

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from service_fixtures import adi_index_dir

from lsr.service import create_app

CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    # A too-large body is a fine way to reject a schema-violating request, too.
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 405, 406, 413, 415, 422]}}}
)
EXAMPLES = int(os.environ.get("LSR_SCHEMA_EXAMPLES", "30"))


def test_api_conforms_to_its_schema():
    app = create_app(adi_index_dir())
    with TestClient(app) as client:  # the schema a client fetches: of what the loaded index serves
        spec = client.get("/openapi.json").json()
    text = json.dumps(spec)
    assert '"ef_search"' not in text and '"nprobe"' not in text and '"dense_weight"' in text
    schema = schemathesis.openapi.from_dict(spec, config=CONFIG)
    schema.app = app  # call the app in-process, as schemathesis.openapi.from_asgi would
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def conforms(case):
            case.call_and_validate()

        conforms()
