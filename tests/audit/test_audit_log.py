"""The audit log: append-only in the database, tamper-evident through its hash chain, readable by operators."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent
from audit.services import record


def verify() -> tuple[int, str]:
    """Run `manage.py verify_audit`; return its exit status and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=err)
        status = 0
    except SystemExit as exc:
        status = int(exc.code or 0)
    return status, out.getvalue() + err.getvalue()


def as_superuser(sql: str, params: list) -> None:
    """Run SQL with triggers off, as a database superuser could: the attack verify_audit must catch."""
    with connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        try:
            cur.execute(sql, params)
        finally:
            cur.execute("SET session_replication_role = DEFAULT")


@pytest.fixture
def three_events(db) -> list[AuditEvent]:
    return [
        record("olivia", "publication.created", "flood", {"key": "updates/a"}),
        record("olivia", "job.update.requested", "web1", {"job": 1}),
        record("system", "gc.finished", "flood", {"deleted": 3}),
    ]


@pytest.mark.django_db
def test_intact_chain_verifies_ok_with_the_count(three_events):
    status, output = verify()
    assert status == 0
    assert output.startswith("OK: 3 audit events")


@pytest.mark.django_db
def test_orm_update_and_delete_are_refused_by_the_database(three_events):
    first = three_events[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=first.pk).update(actor="mallory")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=first.pk).delete()
    assert AuditEvent.objects.get(pk=first.pk).actor == "olivia"
    assert AuditEvent.objects.count() == 3


@pytest.mark.django_db
def test_superuser_edit_of_a_row_is_caught_at_that_row(three_events):
    target = three_events[1]
    as_superuser("UPDATE audit_auditevent SET actor = %s WHERE id = %s", ["mallory", target.pk])

    status, output = verify()

    assert status == 1
    assert f"audit event {target.pk}" in output
    assert "content does not match its hash" in output


@pytest.mark.django_db
def test_superuser_delete_of_a_row_is_caught_at_the_next_row(three_events):
    as_superuser("DELETE FROM audit_auditevent WHERE id = %s", [three_events[1].pk])

    status, output = verify()

    assert status == 1
    assert f"audit event {three_events[2].pk}" in output
    assert "prev_hash" in output


@pytest.mark.django_db
def test_operator_reads_the_log_newest_first_with_filters(operator, three_events):
    everything = operator.client.get("/api/v1/audit/").json()
    assert [r["action"] for r in everything["results"]][:3] == [
        "gc.finished",
        "job.update.requested",
        "publication.created",
    ]
    row = everything["results"][0]
    assert set(row) >= {"id", "at", "actor", "action", "target", "request_id", "details", "prev_hash", "hash"}

    by_action = operator.client.get("/api/v1/audit/", {"action": "job."}).json()
    assert [r["target"] for r in by_action["results"]] == ["web1"]
    by_actor = operator.client.get("/api/v1/audit/", {"actor": "system", "target": "flood"}).json()
    assert [r["action"] for r in by_actor["results"]] == ["gc.finished"]
    since = three_events[1].at.isoformat()
    until = three_events[2].at.isoformat()
    window = operator.client.get("/api/v1/audit/", {"since": since, "until": until}).json()
    assert [r["action"] for r in window["results"]] == ["job.update.requested"]
    bad = operator.client.get("/api/v1/audit/", {"since": "last tuesday"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid"


@pytest.mark.django_db
def test_audit_rows_carry_the_request_id_of_the_api_call(operator, dataset):
    answer = operator.client.post("/api/v1/datasets/flood/update-all/", HTTP_X_REQUEST_ID="req-123")
    assert answer.status_code == 202
    row = AuditEvent.objects.get(action="job.update_all.requested")
    assert row.request_id == "req-123"
    assert row.actor == f"olivia (token {operator.token.name})"


@pytest.mark.django_db
def test_login_failures_are_audited_once_without_the_password(client):
    get_user_model().objects.create_superuser("alice", password="right-password-123")
    assert authenticate(username="alice", password="wrong") is None
    client.post("/admin/login/", {"username": "alice", "password": "wrong-admin"}, REMOTE_ADDR="10.1.2.3")
    client.post("/login/", {"username": "alice", "password": "wrong-dashboard"}, REMOTE_ADDR="10.1.2.4")

    rows = list(AuditEvent.objects.filter(action="login.failed").order_by("id"))
    assert [(r.target, r.details["ip"]) for r in rows] == [
        ("alice", ""),
        ("alice", "10.1.2.3"),
        ("alice", "10.1.2.4"),
    ]
    assert not any("wrong" in str(r.details) for r in rows)
