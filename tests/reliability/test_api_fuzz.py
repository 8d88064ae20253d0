"""Schema-driven fuzzing: schemathesis generates requests from /api/v1/schema/ and none may get a 500.

Runs in-process through the WSGI application against PostgreSQL, with
tokens of the role each endpoint expects (so requests reach the code past
authorisation), a bounded number of examples per operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from accounts.models import ApiToken, Role
from publications.models import Dataset
from servers.models import Server

EXAMPLES_PER_OPERATION = 30

# Autocommit as in production: a statement PostgreSQL refuses (and the API turns into a 400)
# must not poison the requests after it, as it would inside one test transaction.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api_schema(tmp_path, settings):
    """The live schema, read through the app itself.

    As Django's test client does, the WSGI app must not close the test's
    database connection at the end of each request.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "token": "100000/min",
        },
    }
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def tokens(tmp_path) -> dict[str, str]:
    """A dataset and a server to aim at, and a key per role."""
    (tmp_path / "state").mkdir(exist_ok=True)
    flood = Dataset.objects.get_or_create(name="flood", defaults={"s3root": f"file://{tmp_path / 'state'}"})[
        0
    ]
    web1 = Server.objects.get_or_create(name="web1", defaults={"dataset": flood})[0]
    keys = {}
    for role, extra in ((Role.OPERATOR, {}), (Role.PUBLISHER, {}), (Role.AGENT, {"server": web1})):
        user = User.objects.get_or_create(username=f"fuzz-{role}")[0]
        keys[role] = ApiToken.issue(user, role, **extra)[1]
    return keys


def check_case(case, tokens: dict[str, str]) -> None:
    """Send one generated request with the key of the role the endpoint expects; no 500, errors are JSON."""
    if case.path.endswith("/report/"):
        role = Role.AGENT
    elif case.path.startswith("/api/v1/publications/") and case.method == "POST":
        role = Role.PUBLISHER
    else:
        role = Role.OPERATOR
    response = case.call(headers={"Authorization": f"Token {tokens[role]}"})
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) >= {"error", "detail"}, (case.method, case.path, response.status_code, body)


def test_no_generated_request_gets_a_500(api_schema, tokens):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 16, [f"{o.method} {o.path}" for o in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case) -> None:
            check_case(case, tokens)

        fuzz()
