"""Named fixtures for the REST API tests: people with tokens, a dataset on the moto server, servers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from audit.models import AuditEvent
from publications.models import Dataset, PublicationEvent, StateObject
from servers.models import Server


@dataclass
class Caller:
    """Someone calling the API with a token: the client carries `Authorization: Token KEY`."""

    client: APIClient
    token: ApiToken
    key: str
    user: Any


def make_caller(username: str, role: str, **scope) -> Caller:
    user, _ = get_user_model().objects.get_or_create(username=username)
    token, key = ApiToken.issue(user, role, **scope)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return Caller(client, token, key, user)


@pytest.fixture
def operator(db) -> Caller:
    return make_caller("olivia", Role.OPERATOR)


@pytest.fixture
def viewer(db) -> Caller:
    return make_caller("victor", Role.VIEWER)


@pytest.fixture
def publisher(db) -> Caller:
    """A publisher with no scope: any dataset, any label."""
    return make_caller("petra", Role.PUBLISHER)


@pytest.fixture
def dataset(db, s3_root) -> Dataset:
    """A dataset whose state root is a fresh bucket on the moto server."""
    root, endpoint = s3_root
    return Dataset.objects.create(name="flood", s3root=root, s3endpoint=endpoint)


@pytest.fixture
def other_dataset(db, s3_root) -> Dataset:
    root, endpoint = s3_root
    return Dataset.objects.create(name="rivers", s3root=root + "-rivers", s3endpoint=endpoint)


@pytest.fixture
def scoped_publisher(db, dataset) -> Caller:
    """A publisher limited to the `flood` dataset and the `readings` label."""
    return make_caller("sam", Role.PUBLISHER, datasets=[dataset], labels=["readings"])


@pytest.fixture
def two_servers(db, dataset) -> list[Server]:
    return [
        Server.objects.create(name="web1", dataset=dataset, agent_url="http://127.0.0.1:9/"),
        Server.objects.create(name="web2", dataset=dataset),
    ]


@pytest.fixture
def agent(db, two_servers) -> Caller:
    """The agent of web1: may report for web1 only."""
    return make_caller("agent.web1", Role.AGENT, server=two_servers[0])


def stored_keys(dataset: Dataset) -> list[str]:
    """Every key under the dataset's root, straight from the store."""
    return [info.key for info in dataset.open_store().list("")]


def footprint(dataset: Dataset) -> dict[str, int]:
    """What a refused request must leave untouched: objects, registry rows, publications, audit rows."""
    return {
        "objects": len(stored_keys(dataset)),
        "registry": StateObject.objects.filter(dataset=dataset).count(),
        "publications": PublicationEvent.objects.filter(dataset=dataset).count(),
        "audit": AuditEvent.objects.count(),
    }
