"""Webhooks: registered per dataset, events signed and delivered by the worker with retries, once after success."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from jobs.models import Job, JobKind, JobStatus
from jobs.services import fail_stale_jobs
from notifications import delivery, services
from notifications.models import Delivery, DeliveryStatus, Event, EventKind
from notifications.tasks import deliver_event_task
from servers.lag import Lag
from servers.services import mark_unreachable
from tests.api.fixtures import make_caller
from tests.notifications.receiver import receiver

TURTLE = b"@prefix ex: <http://example.org/> .\nex:a ex:b 1 .\n"


def register(operator, url: str, **extra) -> dict:
    answer = operator.client.post(
        "/api/v1/webhooks/", {"url": url, "dataset": "flood", **extra}, format="json"
    )
    assert answer.status_code == 201, answer.content
    return answer.json()


def publish(publisher) -> dict:
    file = io.BytesIO(TURTLE)
    file.name = "a.ttl"
    answer = publisher.client.post(
        "/api/v1/publications/",
        {"dataset": "flood", "op": "add", "label": "readings", "graph": "http://example.org/g", "file": file},
        format="multipart",
    )
    assert answer.status_code == 201, answer.content
    return answer.json()


def report(agent, effective: str | None, ok: bool = True, server: str = "web1"):
    body = {
        "effectiveDate": effective,
        "lastSucceeded": ok,
        "error": None if ok else "HTTP 500 from the store",
    }
    answer = agent.client.post(f"/api/v1/servers/{server}/report/", body, format="json")
    assert answer.status_code == 200, answer.content


def effective_path(publication: dict) -> str:
    from dmsupdate.state.keys import EffectiveTime

    return EffectiveTime(publication["effective_ns"]).path


@pytest.fixture
def second_agent(two_servers):
    return make_caller("agent.web2", Role.AGENT, server=two_servers[1])


def test_publication_applied_on_every_server_is_delivered_signed(
    operator, publisher, agent, second_agent, dataset
):
    older = publish(publisher)  # published before the webhook: never told
    with receiver() as box:
        hook = register(operator, box.url, events=["publication.applied"])
        assert len(hook["secret"]) >= 32
        assert "secret" not in operator.client.get(f"/api/v1/webhooks/{hook['id']}/").json()
        first = publish(publisher)
        report(agent, None)
        report(second_agent, None, server="web2")  # both servers known: the mark starts here
        second = publish(publisher)
        report(agent, effective_path(second))
        assert not Event.objects.filter(
            kind=EventKind.PUBLICATION_APPLIED
        ).exists()  # web2 has not applied it
        report(second_agent, effective_path(second), server="web2")
        told = Event.objects.filter(kind=EventKind.PUBLICATION_APPLIED).order_by("pk")
        assert [e.data["key"] for e in told] == [first["key"], second["key"]]
        assert older["key"] not in [e.data["key"] for e in told]
        event = told.last()
        deliver_event_task(event.pk)
        (got,) = box.received
    expected = "sha256=" + hmac.new(hook["secret"].encode(), got["body"], hashlib.sha256).hexdigest()
    assert got["headers"]["X-DMS-Signature"] == expected
    assert got["headers"]["X-DMS-Event"] == "publication.applied"
    payload = json.loads(got["body"])
    assert payload["event"] == "publication.applied" and payload["dataset"] == "flood"
    assert payload["data"]["publication"] == second["id"] and payload["data"]["servers"] == 2
    # The same reports again tell nothing new.
    report(second_agent, effective_path(second), server="web2")
    assert Event.objects.filter(kind=EventKind.PUBLICATION_APPLIED).count() == 2


def test_a_receiver_failing_twice_gets_it_a_third_time_and_never_again(operator, agent, dataset, settings):
    settings.DMSUPDATE = {**settings.DMSUPDATE, "WEBHOOK_RETRY_SECONDS": 30, "WEBHOOK_MAX_ATTEMPTS": 5}
    with receiver([500, 503]) as box:
        hook = register(operator, box.url)
        report(agent, None, ok=False)  # web1 is failing: server.failing
        (pending,) = Delivery.objects.all()
        assert pending.event.kind == EventKind.SERVER_FAILING
        now = timezone.now()
        assert delivery.deliver_due(now) == 1
        assert delivery.deliver_due(now) == 0  # not due again before its backoff
        assert delivery.deliver_due(now + timedelta(seconds=31)) == 1
        assert delivery.deliver_due(now + timedelta(seconds=31 + 59)) == 0  # the second wait is doubled
        assert delivery.deliver_due(now + timedelta(seconds=31 + 61)) == 1
        for later in (1, 2, 3):
            assert delivery.deliver_due(now + timedelta(days=later)) == 0
            assert delivery.attempt(pending.pk, now + timedelta(days=later)) is None
        assert len(box.received) == 3
    done = Delivery.objects.get(pk=pending.pk)
    assert (done.status, done.attempts, done.response_status) == (DeliveryStatus.SUCCEEDED, 3, 200)
    listed = operator.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries/").json()["results"]
    assert (
        listed[0]["status"] == "succeeded"
        and listed[0]["attempts"] == 3
        and listed[0]["event"] == "server.failing"
    )


def test_a_delivery_gives_up_after_the_last_attempt(operator, agent, dataset, settings):
    settings.DMSUPDATE = {**settings.DMSUPDATE, "WEBHOOK_RETRY_SECONDS": 1, "WEBHOOK_MAX_ATTEMPTS": 2}
    with receiver([500, 500, 500]) as box:
        register(operator, box.url)
        report(agent, None, ok=False)
        now = timezone.now()
        delivery.deliver_due(now)
        delivery.deliver_due(now + timedelta(seconds=5))
        delivery.deliver_due(now + timedelta(days=1))
        assert len(box.received) == 2
    failed = Delivery.objects.get()
    assert failed.status == DeliveryStatus.FAILED and "HTTP 500" in failed.error


def test_server_states_fire_once_per_change_into_them(operator, agent, two_servers, dataset, monkeypatch):
    register(operator, "http://127.0.0.1:9/never-called")
    report(agent, None, ok=False)
    report(agent, None, ok=False)
    assert list(Event.objects.values_list("kind", flat=True)) == [EventKind.SERVER_FAILING]
    report(agent, "2026-12-01/09-00-00-000000000")
    report(agent, None, ok=False)
    assert Event.objects.filter(kind=EventKind.SERVER_FAILING).count() == 2
    mark_unreachable(two_servers[0], "connection refused")
    assert Event.objects.filter(kind=EventKind.SERVER_UNREACHABLE).count() == 1
    # Any state with an event fires: `diverged` (from the fingerprints) needs nothing more.
    real = services.lags_of

    def diverged(servers, now=None):
        return {
            pk: Lag(lag.pending_updates, lag.lag_seconds, "diverged")
            for pk, lag in real(servers, now).items()
        }

    monkeypatch.setattr(services, "lags_of", diverged)
    (event,) = services.observe([two_servers[0].pk])
    assert event.kind == EventKind.SERVER_DIVERGED and event.data["previous"] == "unreachable"


def test_a_failed_job_is_told(operator, two_servers, dataset):
    register(operator, "http://127.0.0.1:9/never-called", events=["job.failed"])
    job = Job.objects.create(
        kind=JobKind.UPDATE,
        server=two_servers[0],
        status=JobStatus.RUNNING,
        heartbeat_at=timezone.now() - timedelta(hours=2),
    )
    assert fail_stale_jobs(600) == 1
    event = Event.objects.get(kind=EventKind.JOB_FAILED)
    assert event.data["job"] == job.pk and event.dataset == dataset and "no heartbeat" in event.data["error"]


def test_webhooks_need_an_operator_and_a_valid_url(operator, viewer, dataset):
    assert viewer.client.get("/api/v1/webhooks/").status_code == 403
    bad = operator.client.post("/api/v1/webhooks/", {"url": "ftp://x", "dataset": "flood"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]
    wrong_event = operator.client.post(
        "/api/v1/webhooks/", {"url": "https://x.example/", "events": ["nope"]}, format="json"
    )
    assert wrong_event.status_code == 400
