"""Property-based API testing against the OpenAPI schema: schemathesis generates valid and invalid
requests for every operation of /api/schema and sends them through Django's WSGI application
(real PostgreSQL and Redis). No response may be a 5xx, and every response (status, content type,
headers, body) must match what the schema documents."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.test import override_settings
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# Committed for real (as in production): the health view and the WSGI handler close connections,
# which would end a test transaction.
pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.slow]

#: Examples per operation; operations without parameters stop early, so the total is below
#: operations times this. The suite asserts the total below.
EXAMPLES = 120
MIN_TOTAL_CASES = 500
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# The schema view reads no table: loading it at import needs no database.
schema = schemathesis.openapi.from_wsgi("/api/schema", get_wsgi_application())
cases: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _enough_cases() -> Iterator[None]:
    """At least MIN_TOTAL_CASES generated requests when the whole module ran."""
    yield
    if len(cases) >= 7:  # every operation ran (not a -k subset)
        total = sum(cases.values())
        assert total >= MIN_TOTAL_CASES, f"only {total} generated cases: {dict(cases)}"


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
@override_settings(API_RATE_LIMIT="0")
def test_every_generated_request_gets_a_documented_non_5xx_answer(case) -> None:  # type: ignore[no-untyped-def]
    cases[case.operation.label] += 1
    if case.path != "/health":
        case.call_and_validate(checks=CHECKS)
        return
    # No Celery worker runs in this process, so health is 503 by design: it must say that the
    # workers are missing, and nothing else.
    response = case.call_and_validate(checks=[c for c in CHECKS if c is not not_a_server_error])
    body = response.json()
    if response.status_code == 503:
        checks = body["checks"]
        assert (checks["database"], checks["redis"], checks["broker"]) == ("ok", "ok", "ok"), body
        assert checks["workers"] == 0 and checks["workersError"], body
