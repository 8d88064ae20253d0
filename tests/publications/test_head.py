"""GET /api/v1/datasets/{name}/head/: the newest update and image with an ETag, 304 while it has not moved."""

from __future__ import annotations

import io
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiToken, Role, ThrottleBucket
from accounts.throttles import TokenRateThrottle
from dmsupdate.state.keys import EffectiveTime, format_key
from publications import head
from publications.models import Dataset
from publications.sync import sync_dataset
from tests.api.fixtures import make_caller

TURTLE = b"@prefix ex: <http://example.org/> .\nex:a ex:b 1 .\n"


def publish(caller):
    file = io.BytesIO(TURTLE)
    file.name = "a.ttl"
    answer = caller.client.post(
        "/api/v1/publications/",
        {"dataset": "flood", "op": "add", "label": "readings", "graph": "http://example.org/g", "file": file},
        format="multipart",
    )
    assert answer.status_code == 201, answer.content
    return answer.json()


def test_head_names_the_newest_update_and_answers_304_until_it_moves(publisher, agent, dataset):
    empty = agent.client.get("/api/v1/datasets/flood/head/")
    assert empty.status_code == 200
    assert empty.json() == {"dataset": "flood", "update": None, "image": None}
    first = publish(publisher)
    moved = agent.client.get("/api/v1/datasets/flood/head/", HTTP_IF_NONE_MATCH=empty["ETag"])
    assert moved.status_code == 200
    assert moved.json()["update"]["key"] == first["key"]
    assert moved.json()["update"]["time"] == first["effective_time"]
    etag = moved["ETag"]
    assert etag != empty["ETag"]
    same = agent.client.get("/api/v1/datasets/flood/head/", HTTP_IF_NONE_MATCH=etag)
    assert same.status_code == 304 and same["ETag"] == etag and not same.content
    second = publish(publisher)
    again = agent.client.get("/api/v1/datasets/flood/head/", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 200 and again.json()["update"]["key"] == second["key"]


def test_an_object_found_by_sync_state_moves_the_head_and_an_image_shows(agent, dataset):
    etag = agent.client.get("/api/v1/datasets/flood/head/")["ETag"]
    store = dataset.open_store()
    eff = EffectiveTime.now()
    image = format_key(eff, "base", "image", None, "tgz")
    store.put_new(image, io.BytesIO(b"x"), 1)
    sync_dataset(dataset)
    answer = agent.client.get("/api/v1/datasets/flood/head/", HTTP_IF_NONE_MATCH=etag)
    assert answer.status_code == 200
    assert answer.json()["image"]["key"] == image
    etag = answer["ETag"]
    sync_dataset(dataset)  # nothing new: the head stays
    assert agent.client.get("/api/v1/datasets/flood/head/", HTTP_IF_NONE_MATCH=etag).status_code == 304


def test_an_agent_reads_only_its_own_dataset_and_unknown_names_are_404(
    agent, dataset, other_dataset, scoped_publisher
):
    assert scoped_publisher.client.get("/api/v1/datasets/flood/head/").status_code == 200
    assert scoped_publisher.client.get("/api/v1/datasets/rivers/head/").status_code == 404
    assert agent.client.get("/api/v1/datasets/flood/head/").status_code == 200
    assert agent.client.get("/api/v1/datasets/rivers/head/").status_code == 404
    assert agent.client.get("/api/v1/datasets/nope/head/").json()["error"] == "not_found"
    viewer = make_caller("vee", Role.VIEWER)
    assert viewer.client.get("/api/v1/datasets/rivers/head/").status_code == 200


def test_a_loaded_control_plane_answers_429_with_retry_after(agent, dataset, settings, monkeypatch):
    settings.DMSUPDATE = {**settings.DMSUPDATE, "HEAD_MAX_IN_FLIGHT": 2, "HEAD_RETRY_AFTER_SECONDS": 42}
    monkeypatch.setattr(head.GATE, "in_flight", 2)
    answer = agent.client.get("/api/v1/datasets/flood/head/")
    assert answer.status_code == 429
    assert answer["Retry-After"] == "42"
    assert answer.json()["error"] == "loaded"
    monkeypatch.setattr(head.GATE, "in_flight", 0)
    assert agent.client.get("/api/v1/datasets/flood/head/").status_code == 200
    assert head.GATE.in_flight == 0
    assert Dataset.objects.get(name="flood").head_changed_ns == 0


def test_a_304_poll_is_two_statements_even_when_it_notes_the_token_use(agent, dataset):
    """The token with its use noted, then the throttle share with the dataset's row."""
    etag = agent.client.get("/api/v1/datasets/flood/head/")["ETag"]
    long_ago = timezone.now() - timedelta(minutes=6)
    for noted in (False, True):
        if noted:
            ApiToken.objects.filter(pk=agent.token.pk).update(last_used_at=long_ago)
        with CaptureQueriesContext(connection) as queries:
            answer = agent.client.get("/api/v1/datasets/flood/head/", HTTP_IF_NONE_MATCH=etag)
        assert answer.status_code == 304
        statements = [q["sql"] for q in queries.captured_queries]
        assert len(statements) == 2, "\n".join(statements)
        assert ApiToken._meta.db_table in statements[0]
        assert ThrottleBucket._meta.db_table in statements[1] and Dataset._meta.db_table in statements[1]
    assert ApiToken.objects.get(pk=agent.token.pk).last_used_at > long_ago + timedelta(minutes=5)


def test_head_polls_spend_the_token_budget_and_a_refusal_says_when_to_come_back(agent, dataset, monkeypatch):
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "3/min"})
    etag = agent.client.get("/api/v1/datasets/flood/head/")["ETag"]
    polls = [agent.client.get("/api/v1/datasets/flood/head/", HTTP_IF_NONE_MATCH=etag) for _ in range(3)]
    assert [p.status_code for p in polls] == [304, 304, 429]
    assert polls[-1].json()["error"] == "throttled"
    assert 1 <= int(polls[-1]["Retry-After"]) <= 20
    assert "ETag" not in polls[-1]
    # Refused before the name is looked up, as any call over its budget.
    assert agent.client.get("/api/v1/datasets/nope/head/").status_code == 429
    other = make_caller("agent.web2", Role.AGENT, server=agent.token.server)
    assert other.client.get("/api/v1/datasets/flood/head/", HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert head.GATE.in_flight == 0
