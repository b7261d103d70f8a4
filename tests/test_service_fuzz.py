"""Schema-driven fuzzing (schemathesis) of the API against its own OpenAPI schema: no 500s,
only documented status codes and response shapes, schema-valid requests accepted and
schema-violating ones rejected."""

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
schema = schemathesis.openapi.from_dict(APP.openapi(), config=CONFIG)
schema.app = APP  # call the app in-process, as schemathesis.openapi.from_asgi would


@pytest.fixture(scope="module", autouse=True)
def _adi_index():
    adi_index_dir()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    case.call_and_validate()
