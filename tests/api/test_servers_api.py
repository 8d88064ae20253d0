"""Servers over the API: registration with its tokens, lag fields, triggers, and agent reports."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Role
from audit.models import AuditEvent
from dmsupdate.state.keys import EffectiveTime
from jobs.models import Job, JobKind
from publications.models import ObjectKind, ObjectState, StateObject
from servers.models import Server, StatusReport
from tests.api.fixtures import make_caller

T0 = EffectiveTime.parse_text("2026-01-15T04:00:01.262711077Z").nanos


def publish_rows(dataset, *seconds: int) -> None:
    """Published updates in the registry, `seconds` after T0."""
    now = timezone.now()
    for s in seconds:
        eff = EffectiveTime(T0 + s * 1_000_000_000)
        StateObject.objects.create(
            dataset=dataset,
            key=f"updates/{eff.path}/x_update.ru",
            kind=ObjectKind.UPDATE,
            op="update",
            label="x",
            effective_ns=eff.nanos,
            state=ObjectState.PUBLISHED,
            first_seen=now,
            last_seen=now,
        )


@pytest.mark.django_db
def test_registration_returns_both_tokens_once_and_the_agent_token_reports(operator, dataset):
    answer = operator.client.post(
        "/api/v1/servers/",
        {"name": "web9", "dataset": "flood", "agent_url": "http://10.0.0.9:8080/"},
        format="json",
    )

    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["token"].startswith("dms_") and body["agent_token"]
    server = Server.objects.get(name="web9")
    assert server.agent_token == body["agent_token"]
    shown = operator.client.get("/api/v1/servers/web9/").json()
    assert "token" not in shown and "agent_token" not in shown
    assert AuditEvent.objects.filter(action="server.registered", target="web9").exists()
    assert AuditEvent.objects.filter(action="token.issued", details__role="agent").exists()

    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    report = agent.post(
        "/api/v1/servers/web9/report/",
        {"effectiveDate": "2026-01-15/04-00-01-262711077", "lastSucceeded": True},
        format="json",
    )
    assert report.status_code == 200, report.content
    assert Server.objects.get(name="web9").effective_ns == T0


@pytest.mark.django_db
def test_register_refuses_unknown_dataset_and_duplicate_names(operator, two_servers):
    unknown = operator.client.post("/api/v1/servers/", {"name": "x", "dataset": "nowhere"}, format="json")
    duplicate = operator.client.post("/api/v1/servers/", {"name": "web1", "dataset": "flood"}, format="json")
    assert unknown.status_code == duplicate.status_code == 400
    assert unknown.json()["error"] == "invalid" and "dataset" in unknown.json()["fields"]


@pytest.mark.django_db
def test_register_refuses_an_agent_url_with_credentials(operator, dataset):
    answer = operator.client.post(
        "/api/v1/servers/",
        {"name": "web7", "dataset": "flood", "agent_url": "http://admin:s3cret@10.0.0.7:8089/"},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    assert "agent_url" in answer.json()["fields"] and "s3cret" not in answer.content.decode()
    assert not Server.objects.filter(name="web7").exists()


@pytest.mark.django_db
def test_server_shows_pending_updates_lag_and_state(viewer, dataset, two_servers):
    publish_rows(dataset, 0, 10, 25)
    Server.objects.filter(name="web1").update(
        effective_ns=T0 + 10 * 1_000_000_000, last_report_at=timezone.now(), last_succeeded=True
    )

    web1 = viewer.client.get("/api/v1/servers/web1/").json()

    assert web1["pending_updates"] == 1
    assert web1["lag_seconds"] == 15.0
    assert web1["effective_time"] == "2026-01-15T04:00:11.262711077Z"
    assert web1["state"] == "behind"
    web2 = viewer.client.get("/api/v1/servers/web2/").json()
    assert (web2["pending_updates"], web2["lag_seconds"], web2["state"]) == (3, None, "behind")


def image_row(dataset, second: int, state: str = ObjectState.PUBLISHED) -> None:
    """An image in the registry, `second` after T0."""
    now = timezone.now()
    eff = EffectiveTime(T0 + second * 1_000_000_000)
    StateObject.objects.create(
        dataset=dataset,
        key=f"images/{eff.path}/full_image.tgz",
        kind=ObjectKind.IMAGE,
        op="image",
        effective_ns=eff.nanos,
        state=state,
        first_seen=now,
        last_seen=now,
    )


@pytest.mark.django_db
def test_a_server_that_never_reported_has_what_follows_the_newest_image_pending(viewer, dataset, two_servers):
    publish_rows(dataset, 0, 10, 25, 30)
    image_row(dataset, 5, ObjectState.EXPIRED)  # GC'd images are not where a new server starts
    image_row(dataset, 10)
    image_row(dataset, 20)

    web2 = viewer.client.get("/api/v1/servers/web2/").json()

    # web2 will start from the image at +20 s and replay +25 and +30.
    assert (web2["pending_updates"], web2["lag_seconds"], web2["state"]) == (2, None, "behind")
    listed = {s["name"]: s for s in viewer.client.get("/api/v1/servers/").json()["results"]}
    assert listed["web2"]["pending_updates"] == 2


@pytest.mark.django_db
def test_listed_lags_agree_with_each_server_counted_alone(viewer, dataset, other_dataset):
    from servers.lag import lag_for

    publish_rows(dataset, *range(0, 60, 3))
    publish_rows(other_dataset, *range(1, 40, 2))
    image_row(other_dataset, 20)
    missing = StateObject.objects.filter(dataset=dataset).order_by("effective_ns")[5]
    StateObject.objects.filter(pk=missing.pk).update(state=ObjectState.MISSING)
    for i, offset in enumerate([None, -1, 0, 7, 13, 14, 30, 59, 100]):
        for ds in (dataset, other_dataset):
            Server.objects.create(
                name=f"{ds.name}-{i}",
                dataset=ds,
                effective_ns=None if offset is None else T0 + offset * 1_000_000_000,
                last_report_at=None if offset is None else timezone.now(),
                last_succeeded=None if offset is None else True,
            )

    listed = viewer.client.get("/api/v1/servers/?limit=100").json()["results"]

    assert len(listed) == 18
    for row in listed:
        lag = lag_for(Server.objects.get(name=row["name"]))
        assert (row["pending_updates"], row["missing_updates"], row["state"]) == (
            lag.pending_updates,
            lag.missing_updates,
            lag.state,
        ), row["name"]
    by_name = {row["name"]: row for row in listed}
    assert by_name["flood-3"]["pending_updates"] == 16  # +9 .. +57 after +7, but for the missing +15
    assert by_name["flood-3"]["missing_updates"] == 1 and by_name["flood-3"]["state"] == "failing"
    assert by_name["flood-0"]["pending_updates"] == 19 and by_name["flood-0"]["missing_updates"] == 0
    assert by_name["rivers-0"]["pending_updates"] == 10  # after the image at +20: +21 .. +39


@pytest.mark.django_db
def test_server_json_is_what_the_generic_serializer_gives(viewer, dataset, two_servers):
    from rest_framework import serializers

    from servers.api.serializers import ServerSerializer

    publish_rows(dataset, 0, 10)
    now = timezone.now()
    Server.objects.filter(name="web1").update(
        effective_ns=T0,
        last_report_at=now,
        last_succeeded=False,
        failed_key="updates/x",
        last_error="boom",
        late_keys=["updates/late"],
        rebuild_requested_at=now,
        unreachable_since=now,
    )
    for server in Server.objects.select_related("dataset"):
        serializer = ServerSerializer(server)
        assert serializer.data == serializers.ModelSerializer.to_representation(serializer, server)
        assert list(serializer.data) == ServerSerializer.Meta.fields


@pytest.mark.django_db
def test_each_listed_server_is_what_its_own_answer_gives(viewer, dataset, two_servers):
    publish_rows(dataset, 0, 10)
    now = timezone.now()
    Server.objects.filter(name="web1").update(
        effective_ns=T0,
        last_report_at=now,
        late_keys=["updates/late"],
        diverged_ns=T0,
        divergence={"reference": "majority", "graphs": [{"graph": "http://g", "triples": 1}]},
        fingerprint={"mode": "full", "total": {"triples": 7, "hash": "ab" * 32}},
        fingerprint_ns=T0,
    )
    # Lists read empty: no late keys; a divergence kept from before the server agreed again.
    Server.objects.exclude(name="web1").update(
        effective_ns=T0, last_report_at=now, late_keys=[], diverged_ns=None, divergence={"reference": "old"}
    )
    listed = viewer.client.get("/api/v1/servers/?limit=100").json()["results"]
    assert {s["name"] for s in listed} == set(Server.objects.values_list("name", flat=True))
    for server in listed:
        assert server == viewer.client.get(f"/api/v1/servers/{server['name']}/").json()
    by_name = {s["name"]: s for s in listed}
    assert by_name["web1"]["late_keys"] == ["updates/late"] and by_name["web1"]["divergence"]["graphs"]
    others = [s for name, s in by_name.items() if name != "web1"]
    assert others and all(s["late_keys"] == [] and s["divergence"] is None for s in others)


@pytest.mark.django_db
def test_server_list_takes_the_same_number_of_queries_for_two_or_twenty_servers(viewer, dataset, two_servers):
    publish_rows(dataset, 0, 1)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert viewer.client.get("/api/v1/servers/").status_code == 200
        return len(ctx.captured_queries)

    count()  # the first call also stamps the token's last use
    few = count()
    for i in range(18):
        Server.objects.create(name=f"more{i}", dataset=dataset, effective_ns=T0)
    assert count() == few
    assert viewer.client.get("/api/v1/servers/").json()["count"] == 20


@pytest.mark.django_db
def test_update_rebuild_and_update_all_answer_202_with_their_job(operator, dataset, two_servers):
    update = operator.client.post("/api/v1/servers/web1/update/")
    rebuild = operator.client.post("/api/v1/servers/web2/rebuild/")
    update_all = operator.client.post("/api/v1/datasets/flood/update-all/")

    assert (update.status_code, rebuild.status_code, update_all.status_code) == (202, 202, 202)
    assert update.json()["job"]["kind"] == JobKind.UPDATE and update.json()["job"]["server"] == "web1"
    assert rebuild.json()["job"]["kind"] == JobKind.REBUILD
    assert (
        update_all.json()["job"]["kind"] == JobKind.UPDATE_ALL
        and update_all.json()["job"]["dataset"] == "flood"
    )
    assert Server.objects.get(name="web2").rebuild_requested_at is not None
    assert operator.client.get("/api/v1/servers/web2/").json()["state"] == "rebuilding"
    job = operator.client.get(f"/api/v1/jobs/{update.json()['job']['id']}/").json()
    assert job["status"] == "queued" and job["actor"] == f"olivia (token {operator.token.name})"
    assert Job.objects.count() == 3


@pytest.mark.django_db
def test_trigger_on_a_disabled_or_unknown_server_is_refused(operator, two_servers):
    Server.objects.filter(name="web1").update(enabled=False)
    disabled = operator.client.post("/api/v1/servers/web1/update/")
    unknown = operator.client.post("/api/v1/servers/nope/update/")
    assert (disabled.status_code, disabled.json()["error"]) == (409, "server_disabled")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_agent_may_report_only_for_its_own_server(agent, two_servers):
    other = agent.client.post("/api/v1/servers/web2/report/", {"lastSucceeded": True}, format="json")
    assert other.status_code == 403
    assert not StatusReport.objects.exists()
    reading = agent.client.get("/api/v1/servers/web1/")
    assert reading.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"effectiveDate": "yesterday"},
        {"lastSucceeded": "yes"},
        {"late": "one-key"},
        {"lastUpdate": "not a time"},
        ["a", "list"],
    ],
)
def test_malformed_report_is_400_and_records_nothing(agent, two_servers, body):
    answer = agent.client.post("/api/v1/servers/web1/report/", body, format="json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"] == "invalid_report"
    assert not StatusReport.objects.exists()


@pytest.mark.django_db
def test_report_that_is_not_json_is_refused(agent, two_servers):
    answer = agent.client.generic(
        "POST",
        "/api/v1/servers/web1/report/",
        b"effectiveDate=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 415
    broken = agent.client.generic(
        "POST", "/api/v1/servers/web1/report/", b"{nope", content_type="application/json"
    )
    assert broken.status_code == 400 and broken.json()["error"] == "parse_error"


@pytest.mark.django_db
def test_report_updates_lag_and_answers_it(agent, dataset, two_servers):
    publish_rows(dataset, 0, 5)
    answer = agent.client.post(
        "/api/v1/servers/web1/report/",
        {
            "effectiveDate": "2026-01-15/04-00-01-262711077",
            "lastSucceeded": True,
            "applied": 1,
            "lastUpdate": "2026-01-15T05:00:00Z",
        },
        format="json",
    )
    assert answer.status_code == 200
    assert (answer.json()["pending_updates"], answer.json()["lag_seconds"]) == (1, 5.0)


@pytest.mark.django_db
def test_server_list_filters_by_dataset_and_enabled(viewer, dataset, other_dataset, two_servers):
    Server.objects.create(name="river1", dataset=other_dataset, enabled=False)
    flood = viewer.client.get("/api/v1/servers/", {"dataset": "flood"}).json()
    disabled = viewer.client.get("/api/v1/servers/", {"enabled": "false"}).json()
    assert [s["name"] for s in flood["results"]] == ["web1", "web2"]
    assert [(s["name"], s["state"]) for s in disabled["results"]] == [("river1", "disabled")]
    enabled = viewer.client.get("/api/v1/servers/", {"enabled": "1"}).json()
    assert [s["name"] for s in enabled["results"]] == ["web1", "web2"]
    unclear = viewer.client.get("/api/v1/servers/", {"enabled": "maybe"})
    assert unclear.status_code == 400 and "enabled" in unclear.json()["fields"]


def test_a_pull_agent_learns_of_a_rebuild_from_the_report_answer_and_stays_rebuilding_until_it_rebuilt(
    operator, two_servers
):
    web2 = two_servers[1]  # no agent URL: a pull agent running `watch`
    pull = make_caller("agent.web2", Role.AGENT, server=web2).client
    asked = operator.client.post("/api/v1/servers/web2/rebuild/")
    assert asked.status_code == 202

    plain = pull.post(
        "/api/v1/servers/web2/report/",
        {"effectiveDate": "2026-01-15/04-00-01-0", "lastSucceeded": True, "lastRun": "update"},
        format="json",
    )
    assert plain.json()["rebuild"] is True
    assert operator.client.get("/api/v1/servers/web2/").json()["state"] == "rebuilding"

    rebuilt = pull.post(
        "/api/v1/servers/web2/report/",
        {"effectiveDate": "2026-01-15/04-00-01-0", "lastSucceeded": True, "lastRun": "rebuild"},
        format="json",
    )
    assert rebuilt.json()["rebuild"] is False
    assert operator.client.get("/api/v1/servers/web2/").json()["state"] != "rebuilding"


@pytest.mark.django_db
def test_a_reported_error_is_stored_and_shown_without_credentials(agent, viewer, two_servers):
    error = (
        "add k: cannot reach http://agent:hunter22x@store:3030/ds/data?graph=http://e.org/g: "
        "Authorization: Basic YWdlbnQ6aHVudGVyMjJ4"
    )
    answer = agent.client.post(
        "/api/v1/servers/web1/report/",
        {"lastSucceeded": False, "failedKey": "k", "error": error, "hookError": "token=abcdef123"},
        format="json",
    )
    assert answer.status_code == 200
    shown = viewer.client.get("/api/v1/servers/web1/").content.decode()
    report = StatusReport.objects.filter(server__name="web1").latest("received_at")
    stored = [Server.objects.get(name="web1").last_error, report.error, str(report.body)]
    for text in [shown, *stored]:
        assert "hunter22x" not in text and "YWdlbnQ6aHVudGVyMjJ4" not in text and "abcdef123" not in text
    assert "http://***@store:3030/ds/data" in report.error and "http://***@store:3030" in shown
