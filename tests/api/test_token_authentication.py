"""`Authorization: Token KEY`: each call checks the token afresh, and notes its use at most every five minutes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.authentication import find_token
from accounts.models import ApiToken, hash_token
from tests.api.fixtures import make_caller

HEAD = "/api/v1/datasets/flood/head/"


def last_used(caller) -> object:
    return ApiToken.objects.values_list("last_used_at", flat=True).get(pk=caller.token.pk)


@pytest.mark.django_db
def test_a_call_notes_the_token_use_when_the_last_noted_one_is_over_five_minutes_old(agent):
    assert last_used(agent) is None
    assert agent.client.get(HEAD).status_code == 200
    first = last_used(agent)
    assert first is not None and timezone.now() - first < timedelta(seconds=30)

    recent = timezone.now() - timedelta(minutes=4)
    ApiToken.objects.filter(pk=agent.token.pk).update(last_used_at=recent)
    assert agent.client.get(HEAD).status_code == 200
    assert last_used(agent) == recent

    old = timezone.now() - timedelta(minutes=6)
    ApiToken.objects.filter(pk=agent.token.pk).update(last_used_at=old)
    assert agent.client.get(HEAD).status_code == 200
    assert timezone.now() - last_used(agent) < timedelta(seconds=30)


@pytest.mark.django_db
def test_a_revoked_token_is_refused_on_its_very_next_call(agent):
    etag = agent.client.get(HEAD)["ETag"]
    assert agent.client.get(HEAD, HTTP_IF_NONE_MATCH=etag).status_code == 304
    ApiToken.objects.filter(pk=agent.token.pk).update(revoked_at=timezone.now())
    answer = agent.client.get(HEAD, HTTP_IF_NONE_MATCH=etag)
    assert answer.status_code == 401
    assert answer.json() == {"error": "unauthenticated", "detail": "unknown or revoked token"}
    assert "ETag" not in answer


@pytest.mark.django_db
def test_a_deactivated_user_is_refused_at_once_and_its_use_is_not_noted(agent):
    assert agent.client.get(HEAD).status_code == 200
    ApiToken.objects.filter(pk=agent.token.pk).update(last_used_at=None)
    agent.user.is_active = False
    agent.user.save(update_fields=["is_active"])
    assert agent.client.get(HEAD).status_code == 401
    assert last_used(agent) is None


@pytest.mark.django_db
def test_a_changed_scope_or_server_applies_to_the_next_call(agent, scoped_publisher, dataset, other_dataset):
    assert scoped_publisher.client.get(HEAD).status_code == 200
    scoped_publisher.token.datasets.set([other_dataset])
    assert scoped_publisher.client.get(HEAD).status_code == 404
    assert scoped_publisher.client.get("/api/v1/datasets/rivers/head/").status_code == 200

    assert agent.client.get(HEAD).status_code == 200
    server = agent.token.server
    server.dataset = other_dataset
    server.save(update_fields=["dataset"])
    assert agent.client.get(HEAD).status_code == 404
    assert agent.client.get("/api/v1/datasets/rivers/head/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Token dms_not-a-key", "Token", "Token a b", "Bearer \xff"])
def test_unknown_or_malformed_keys_get_a_json_401(dataset, header):
    make_caller("someone", "viewer")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    answer = client.get(HEAD)
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthenticated"


@pytest.mark.django_db
def test_the_token_is_read_whole_with_its_user_and_scope(scoped_publisher):
    token = find_token(hash_token(scoped_publisher.key), timezone.now())
    assert token is not None
    assert (token.pk, token.role, token.labels) == (scoped_publisher.token.pk, "publisher", ["readings"])
    assert token.user.username == "sam" and token.user.is_active
    assert token.created_at == scoped_publisher.token.created_at
    assert find_token(hash_token(scoped_publisher.key + "x"), timezone.now()) is None
