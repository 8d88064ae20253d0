"""The role table: every endpoint answers each role as the table says, and anonymous callers get 401."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import Role
from jobs.models import Job, JobKind
from tests.api.fixtures import make_caller

R = {Role.VIEWER, Role.OPERATOR, Role.PUBLISHER}  # readers
OPS = {Role.OPERATOR}

# (method, path, roles allowed); anything else is 403 for a token, 401 anonymous.
TABLE = [
    ("get", "/api/v1/publications/", R),
    ("get", "/api/v1/publications/{publication}/", R),
    ("post", "/api/v1/publications/", {Role.PUBLISHER, Role.OPERATOR}),
    ("get", "/api/v1/datasets/", R),
    ("get", "/api/v1/datasets/flood/", R),
    ("post", "/api/v1/datasets/", OPS),
    ("post", "/api/v1/datasets/flood/update-all/", OPS),
    ("get", "/api/v1/servers/", R),
    ("get", "/api/v1/servers/web1/", R),
    ("post", "/api/v1/servers/", OPS),
    ("post", "/api/v1/servers/web1/update/", OPS),
    ("post", "/api/v1/servers/web1/rebuild/", OPS),
    ("post", "/api/v1/servers/web1/report/", {Role.AGENT}),
    ("get", "/api/v1/jobs/{job}/", R),
    ("get", "/api/v1/objects/", R),
    ("get", "/api/v1/audit/", OPS),
]


@pytest.fixture
def callers(db, agent):
    return {
        Role.VIEWER: make_caller("v", Role.VIEWER),
        Role.OPERATOR: make_caller("o", Role.OPERATOR),
        Role.PUBLISHER: make_caller("p", Role.PUBLISHER),
        Role.AGENT: agent,
    }


@pytest.fixture
def publication_id(dataset):
    from publications.models import PublicationEvent

    return PublicationEvent.objects.create(
        dataset=dataset,
        key="updates/2026-01-01/00-00-00-1/x_update.ru",
        source="x",
        op="update",
        effective_ns=1,
        s3_url="s3://b/k",
    ).pk


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path", "allowed"), TABLE, ids=[f"{m} {p}" for m, p, _ in TABLE])
def test_role_table(method, path, allowed, callers, dataset, two_servers, publication_id):
    job = Job.objects.create(kind=JobKind.GC, dataset=dataset)
    url = path.format(publication=publication_id, job=job.pk)
    for role, caller in callers.items():
        answer = getattr(caller.client, method)(url, {}, format="json")
        if role in allowed:
            assert answer.status_code not in (401, 403), (role, answer.content)
        else:
            assert answer.status_code == 403, (role, answer.status_code, answer.content)
            assert answer.json()["error"] == "forbidden"
    anonymous = getattr(APIClient(), method)(url, {}, format="json")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "unauthenticated"
