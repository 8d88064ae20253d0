"""Property test over the OpenAPI schema: no generated request makes the API answer 500."""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings

EXAMPLES_PER_OPERATION = 10


@pytest.fixture
def api_schema():
    """The schema, served by the WSGI app, which the generated requests are then sent to."""
    from dmsupdate.wsgi import application

    # As Django's test client does: keep the test's database connection across requests.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


# Autocommit, as in production: a refused statement must not poison the requests after it.
@pytest.mark.django_db(transaction=True)
def test_no_generated_request_gets_a_server_error(api_schema, operator, dataset, two_servers):
    headers = {"Authorization": f"Token {operator.key}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 16

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            response = case.call(headers=headers)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
            if response.status_code >= 400 and "json" in response.headers.get("Content-Type", [""])[0]:
                body = response.json()
                assert "error" in body and "detail" in body, body

        check()
