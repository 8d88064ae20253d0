"""Idempotency-Key: one object per key and body; a store outage publishes nothing and a retry succeeds once."""

from __future__ import annotations

import pytest

from publications.models import ObjectState, PublicationEvent, StateObject
from tests.api.fixtures import footprint, stored_keys
from tests.conftest import free_port

GRAPH = "http://example.org/graph/g"
TTL = b"<http://example.org/a> <http://example.org/b> <http://example.org/c> .\n"
OTHER_TTL = b"<http://example.org/a> <http://example.org/b> <http://example.org/d> .\n"
QUERY = f"dataset=flood&op=add&label=readings&graph={GRAPH}"


def send(caller, body: bytes, key: str | None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return caller.client.generic(
        "POST", f"/api/v1/publications/?{QUERY}", body, content_type="text/turtle", **headers
    )


@pytest.mark.django_db
def test_same_key_and_body_returns_the_first_response_and_writes_one_object(publisher, dataset):
    first = send(publisher, TTL, "batch-42")
    second = send(publisher, TTL, "batch-42")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert len(stored_keys(dataset)) == 1
    assert PublicationEvent.objects.filter(dataset=dataset).count() == 1


@pytest.mark.django_db
def test_same_key_with_a_different_body_is_409_and_changes_nothing(publisher, dataset):
    assert send(publisher, TTL, "batch-42").status_code == 201
    before = footprint(dataset)

    answer = send(publisher, OTHER_TTL, "batch-42")

    assert answer.status_code == 409
    assert answer.json()["error"] == "idempotency_conflict"
    assert footprint(dataset) == before


@pytest.mark.django_db
def test_without_a_key_each_request_is_a_new_publication(publisher, dataset):
    assert send(publisher, TTL, None).status_code == 201
    assert send(publisher, TTL, None).status_code == 201
    assert len(stored_keys(dataset)) == 2


@pytest.mark.django_db
def test_keys_belong_to_their_user(publisher, operator, dataset):
    mine = send(publisher, TTL, "shared-name").json()
    theirs = send(operator, TTL, "shared-name").json()
    assert mine["id"] != theirs["id"]


@pytest.mark.django_db
def test_store_outage_gives_503_no_published_row_and_the_retry_succeeds_once(publisher, dataset):
    live_endpoint = dataset.s3endpoint
    dataset.s3endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there: S3 is down
    dataset.save()

    down = send(publisher, TTL, "retry-me")

    assert down.status_code == 503
    assert down.json()["error"] == "store_unavailable"
    assert not StateObject.objects.filter(dataset=dataset, state=ObjectState.PUBLISHED).exists()
    assert not PublicationEvent.objects.exists()
    # What is left is an `unpublished` row, which GC collects after the grace period.
    assert list(StateObject.objects.values_list("state", flat=True)) == [ObjectState.UNPUBLISHED]

    dataset.s3endpoint = live_endpoint
    dataset.save()
    retried = send(publisher, TTL, "retry-me")
    again = send(publisher, TTL, "retry-me")

    assert retried.status_code == again.status_code == 201
    assert again.json() == retried.json()
    assert stored_keys(dataset) == [retried.json()["key"]]
    published = StateObject.objects.filter(dataset=dataset, state=ObjectState.PUBLISHED)
    assert [o.key for o in published] == [retried.json()["key"]]
    assert PublicationEvent.objects.count() == 1
