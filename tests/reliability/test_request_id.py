"""A request's `X-Request-Id` is in the structured log line and in the audit row of what it did."""

from __future__ import annotations

import io
import logging

import pytest
from django.conf import settings as django_settings

from accounts.models import Role
from audit.middleware import RequestIdFilter
from audit.models import AuditEvent
from publications.models import Dataset
from servers.models import Server
from tests.api.fixtures import make_caller

pytestmark = pytest.mark.django_db


@pytest.fixture
def structured_log():
    """The project's structured format and request-id filter on a handler of our own, at INFO."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(django_settings.LOGGING["formatters"]["structured"]["format"]))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_a_request_id_given_by_the_caller_reaches_the_log_and_the_audit_row(structured_log, tmp_path):
    dataset = Dataset.objects.create(name="flood", s3root=f"file://{tmp_path}")
    Server.objects.create(name="web1", dataset=dataset)
    operator = make_caller("olivia", Role.OPERATOR)

    response = operator.client.post("/api/v1/servers/web1/update/", HTTP_X_REQUEST_ID="abc123")

    assert response.status_code == 202, response.content
    assert response["X-Request-Id"] == "abc123"
    row = AuditEvent.objects.get(action="job.update.requested")
    assert row.request_id == "abc123" and row.target == "web1"
    lines = [line for line in structured_log.getvalue().splitlines() if "request_id=abc123" in line]
    assert any(f"audit #{row.pk} job.update.requested web1" in line for line in lines), (
        structured_log.getvalue()
    )


def test_a_malformed_request_id_is_replaced_not_logged(structured_log, tmp_path):
    dataset = Dataset.objects.create(name="flood", s3root=f"file://{tmp_path}")
    Server.objects.create(name="web1", dataset=dataset)
    operator = make_caller("olivia", Role.OPERATOR)

    response = operator.client.post("/api/v1/servers/web1/update/", HTTP_X_REQUEST_ID="bad id\nforged=1")

    made = response["X-Request-Id"]
    assert made != "bad id\nforged=1" and len(made) == 32
    assert AuditEvent.objects.get(action="job.update.requested").request_id == made
    assert "forged=1" not in structured_log.getvalue()
