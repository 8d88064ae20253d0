"""What one publication costs the registry: a bounded number of statements in two short transactions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.models import Job, JobKind
from publications import services
from publications.api.serializers import PublicationSerializer
from publications.models import Dataset, PublicationEvent
from tests.publications.test_publish_api import GRAPH, TURTLE, _named


def publish(publisher, n: int, **headers):
    return publisher.client.post(
        "/api/v1/publications/",
        {
            "dataset": "flood",
            "op": "add",
            "label": "readings",
            "graph": f"{GRAPH}/{n}",
            "file": _named("r.ttl", TURTLE),
        },
        format="multipart",
        **headers,
    )


@pytest.mark.django_db
def test_a_publication_in_a_burst_takes_twelve_statements_in_two_transactions(publisher, dataset):
    assert publish(publisher, 0).status_code == 201  # starts the burst's update job
    with CaptureQueriesContext(connection) as queries:
        answer = publish(publisher, 1)
    assert answer.status_code == 201, answer.content
    statements = [q["sql"] for q in queries.captured_queries]
    transactions = [sql for sql in statements if sql.startswith(("BEGIN", "SAVEPOINT"))]
    work = [sql for sql in statements if not sql.startswith(("BEGIN", "SAVEPOINT", "RELEASE", "COMMIT"))]
    # token, throttle, dataset, token scope; allocate + unpublished row; published row,
    # event, audit lock, chain head, audit row; the burst's queued job.
    assert len(work) <= 12, "\n".join(work)
    assert len(transactions) == 2, "\n".join(statements)
    assert not any("pg_advisory_lock" in sql for sql in statements), "the debounce lock is for starting a job"
    assert Job.objects.filter(kind=JobKind.UPDATE_ALL, dataset=dataset).count() == 1


@pytest.mark.django_db
def test_the_answer_is_the_serializer_shape_and_is_stored_only_for_a_replayable_key(publisher, dataset):
    plain = publish(publisher, 0)
    keyed = publish(publisher, 1, HTTP_IDEMPOTENCY_KEY="batch-1")
    for answer in (plain, keyed):
        assert answer.status_code == 201, answer.content
        event = PublicationEvent.objects.select_related("dataset", "object").get(pk=answer.json()["id"])
        assert answer.json() == dict(PublicationSerializer(event).data)
        assert answer.json()["state"] == "published"
    assert PublicationEvent.objects.get(pk=plain.json()["id"]).response == {}
    assert PublicationEvent.objects.get(pk=keyed.json()["id"]).response == keyed.json()


@pytest.mark.django_db
def test_times_stay_strictly_increasing_when_the_clock_stands_still_or_goes_back(monkeypatch, dataset):
    readings = iter([5_000, 5_000, 4_000, 6_000, 6_001])
    monkeypatch.setattr(services, "time", SimpleNamespace(time_ns=lambda: next(readings)))
    times = [services.allocate_time(dataset).nanos for _ in range(5)]
    assert times == [5_000, 5_001, 5_002, 6_000, 6_001]
    assert Dataset.objects.get(pk=dataset.pk).last_effective_ns == 6_001
