"""Every API endpoint, every method, every role: who may call what, and nothing secret ever in an answer.

The table is checked against the URL configuration, so an endpoint added
without a row here fails the test. Roles: anonymous, viewer, operator,
publisher, a publisher scoped to one dataset and label, and the agents of
two servers. Secrets planted for the run (every API key, the servers'
agent tokens, the S3 secret in the environment, SECRET_KEY, the metrics
token) must appear in no answer, and no API key may be stored in plaintext
anywhere in the database.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.urls import get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Role
from audit.services import record
from jobs.models import Job, JobKind
from notifications.models import Webhook
from publications.models import Dataset, PublicationEvent, StateObject
from servers.models import Server
from tests.api.fixtures import make_caller

pytestmark = pytest.mark.django_db

PLANTED_AWS_SECRET = "plantedAwsSecret0123456789abcdefPLANTED"
PLANTED_SECRET_KEY = "planted-django-secret-key-0123456789-abcdefghijklmnop"
PLANTED_METRICS_TOKEN = "planted-metrics-token-0123456789"
AGENT_TOKENS = {"web1": "planted-agent-token-web1-0123456789", "web2": "planted-agent-token-web2-0123456789"}

ANON, VIEWER, OPERATOR, PUBLISHER, SCOPED, AGENT1, AGENT2 = (
    "anonymous",
    "viewer",
    "operator",
    "publisher",
    "scoped publisher",
    "agent of web1",
    "agent of web2",
)
ROLES = (ANON, VIEWER, OPERATOR, PUBLISHER, SCOPED, AGENT1, AGENT2)
READERS = {VIEWER, OPERATOR, PUBLISHER, SCOPED}
OPS = {OPERATOR}
NOBODY: set[str] = set()

PUBLISH_RIVERS = {"dataset": "rivers", "op": "update", "label": "readings", "s3_url": "s3://b/k"}

# (method, path, body, roles that get past authorisation). The others: 401 anonymous, 403 with a token
# (or 405 for a method the endpoint does not have).
TABLE = [
    ("get", "/api/v1/publications/", None, READERS),
    ("post", "/api/v1/publications/", {}, {PUBLISHER, SCOPED, OPERATOR}),
    ("post", "/api/v1/publications/", PUBLISH_RIVERS, {PUBLISHER, OPERATOR}),  # out of the scoped one's reach
    ("get", "/api/v1/publications/{publication}/", None, READERS),
    ("get", "/api/v1/datasets/", None, READERS),
    ("post", "/api/v1/datasets/", {}, OPS),
    ("get", "/api/v1/datasets/flood/", None, READERS),
    ("post", "/api/v1/datasets/flood/update-all/", {}, OPS),
    ("get", "/api/v1/objects/", None, READERS),
    ("get", "/api/v1/objects/{object}/", None, READERS),
    ("get", "/api/v1/servers/", None, READERS),
    ("post", "/api/v1/servers/", {}, OPS),
    ("get", "/api/v1/servers/web1/", None, READERS),
    ("post", "/api/v1/servers/web1/update/", {}, OPS),
    ("post", "/api/v1/servers/web1/rebuild/", {}, OPS),
    ("post", "/api/v1/servers/web1/report/", {"lastSucceeded": True}, {AGENT1}),
    ("post", "/api/v1/servers/web2/report/", {"lastSucceeded": True}, {AGENT2}),
    ("get", "/api/v1/jobs/{job}/", None, READERS),
    ("get", "/api/v1/audit/", None, OPS),
    ("get", "/api/v1/audit/{audit}/", None, OPS),
    ("get", "/api/v1/datasets/flood/head/", None, READERS | {AGENT1, AGENT2}),
    ("put", "/api/v1/publications/{publication}/tags/", {"tags": ["checked"]}, {PUBLISHER, OPERATOR}),
    ("get", "/api/v1/webhooks/", None, OPS),
    ("post", "/api/v1/webhooks/", {"url": "https://hooks.example.org/new"}, OPS),
    ("get", "/api/v1/webhooks/{webhook}/", None, OPS),
    ("put", "/api/v1/webhooks/{webhook}/", {"url": "https://hooks.example.org/put"}, OPS),
    ("patch", "/api/v1/webhooks/{webhook}/", {"enabled": False}, OPS),
    ("get", "/api/v1/webhooks/{webhook}/deliveries/", None, OPS),
    ("delete", "/api/v1/webhooks/{webhook}/", None, OPS),
    # Methods no endpoint has: never 2xx, whoever asks.
    ("delete", "/api/v1/servers/web1/", None, NOBODY),
    ("put", "/api/v1/servers/web1/", {"name": "x"}, NOBODY),
    ("patch", "/api/v1/datasets/flood/", {"s3root": "file:///etc"}, NOBODY),
    ("delete", "/api/v1/datasets/flood/", None, NOBODY),
    ("delete", "/api/v1/publications/{publication}/", None, NOBODY),
    ("delete", "/api/v1/objects/{object}/", None, NOBODY),
    ("delete", "/api/v1/audit/{audit}/", None, NOBODY),
    ("patch", "/api/v1/audit/{audit}/", {"action": "x"}, NOBODY),
    ("delete", "/api/v1/jobs/{job}/", None, NOBODY),
]
# Public on purpose: the schema (no data), liveness; /metrics asks for its token when one is set.
PUBLIC = [("get", "/api/v1/schema/"), ("get", "/healthz")]


@pytest.fixture
def world(settings, monkeypatch, tmp_path):
    """Two datasets, two servers with agent tokens, a publication, an object, a job, an audit row; one caller per role."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PLANTED_AWS_SECRET)
    settings.SECRET_KEY = PLANTED_SECRET_KEY
    settings.DMSUPDATE = {**settings.DMSUPDATE, "METRICS_TOKEN": PLANTED_METRICS_TOKEN}
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "token": "100000/min",
        },
    }
    for name in ("flood", "rivers"):
        (tmp_path / name).mkdir()
    flood = Dataset.objects.create(name="flood", s3root=f"file://{tmp_path / 'flood'}")
    Dataset.objects.create(name="rivers", s3root=f"file://{tmp_path / 'rivers'}")
    web1 = Server.objects.create(name="web1", dataset=flood, agent_token=AGENT_TOKENS["web1"])
    web2 = Server.objects.create(name="web2", dataset=flood, agent_token=AGENT_TOKENS["web2"])
    key = "updates/2026-01-01/00-00-00-1/readings_update.ru"
    publication = PublicationEvent.objects.create(
        dataset=flood, key=key, source="x", op="update", effective_ns=1, s3_url="s3://b/k"
    )
    obj = StateObject.objects.create(
        dataset=flood,
        key=key,
        kind="update",
        effective_ns=1,
        label="readings",
        op="update",
        first_seen=timezone.now(),
        last_seen=timezone.now(),
    )
    job = Job.objects.create(kind=JobKind.GC, dataset=flood)
    callers = {
        VIEWER: make_caller("v", Role.VIEWER),
        OPERATOR: make_caller("o", Role.OPERATOR),
        PUBLISHER: make_caller("p", Role.PUBLISHER),
        SCOPED: make_caller("s", Role.PUBLISHER, datasets=[flood], labels=["readings"]),
        AGENT1: make_caller("a1", Role.AGENT, server=web1),
        AGENT2: make_caller("a2", Role.AGENT, server=web2),
    }
    audit = record("olivia", "dataset.created", "flood", {})
    webhook = Webhook.objects.create(dataset=flood, url="https://hooks.example.org/dms")
    ids = {
        "publication": publication.pk,
        "object": obj.pk,
        "job": job.pk,
        "audit": audit.pk,
        "webhook": webhook.pk,
    }
    clients = {ANON: APIClient(), **{role: c.client for role, c in callers.items()}}
    secrets = [
        PLANTED_AWS_SECRET,
        PLANTED_SECRET_KEY,
        PLANTED_METRICS_TOKEN,
        *AGENT_TOKENS.values(),
        *(c.key for c in callers.values()),
    ]
    return clients, ids, secrets, [c.key for c in callers.values()]


def api_routes() -> set[tuple[str, str]]:
    """(URL name, method) of every API v1 endpoint in the URL configuration."""
    routes = set()

    def walk(patterns, prefix=""):
        for p in patterns:
            if hasattr(p, "url_patterns"):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif prefix.startswith("api/v1/") and getattr(p.callback, "actions", None):
                # DRF adds "head" (a copy of "get") to a viewset's actions once it has served a GET.
                for method in set(p.callback.actions) - {"head"}:
                    routes.add((p.name, method))

    walk(get_resolver().url_patterns)
    return routes


def route_of(path: str) -> str:
    return get_resolver().resolve(path).url_name


def call(client: APIClient, method: str, url: str, body):
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body, format="json")


def test_the_table_covers_every_api_endpoint_and_method():
    covered = set()
    for method, path, _body, _allowed in TABLE:
        url = path.format(publication=1, object=1, job=1, audit=1, webhook=1)
        covered.add((route_of(url), method))
    missing = {(route, method) for route, method in api_routes()} - covered
    assert not missing, f"endpoints without a row in the access table: {sorted(missing)}"


def test_every_endpoint_answers_every_role_as_the_table_says_and_reveals_no_secret(world):
    clients, ids, secrets, _keys = world
    answers: list[tuple[str, str, str, bytes]] = []
    problems = []
    for method, path, body, allowed in TABLE:
        url = path.format(**ids)
        for role in ROLES:
            response = call(clients[role], method, url, body)
            answers.append((role, method, url, response.content))
            code = response.status_code
            assert code != 500, (role, method, url, response.content)
            if role == ANON:
                ok = code == 401 and response.json()["error"] == "unauthenticated"
            elif role in allowed:
                ok = code not in (401, 403, 405)
            elif allowed is NOBODY:
                ok = code in (403, 405)
            else:
                ok = code == 403 and response.json()["error"] == "forbidden"
            if not ok:
                problems.append((role, method, url, code, response.content[:200]))
    for method, path in PUBLIC:
        response = call(clients[ANON], method, path, None)
        assert response.status_code == 200, (path, response.status_code)
        answers.append((ANON, method, path, response.content))
    metrics_anonymous = clients[ANON].get("/metrics")
    metrics = clients[ANON].get("/metrics", HTTP_AUTHORIZATION=f"Bearer {PLANTED_METRICS_TOKEN}")
    assert metrics_anonymous.status_code in (401, 403) and metrics.status_code == 200
    answers += [
        (ANON, "get", "/metrics", metrics.content),
        (ANON, "get", "/metrics", metrics_anonymous.content),
    ]

    assert not problems, "\n".join(map(repr, problems))
    leaks = [
        (role, method, url, secret[:12])
        for role, method, url, content in answers
        for secret in secrets
        if secret.encode() in content
    ]
    assert not leaks, f"secrets in answers: {leaks}"


def test_nothing_a_refused_or_unrouted_call_made_changed_the_registry(world):
    clients, ids, _secrets, _keys = world
    before = (
        Server.objects.count(),
        Dataset.objects.count(),
        PublicationEvent.objects.count(),
        StateObject.objects.count(),
    )
    for method, path, body, allowed in TABLE:
        if allowed is NOBODY:
            for role in ROLES:
                call(clients[role], method, path.format(**ids), body)
    after = (
        Server.objects.count(),
        Dataset.objects.count(),
        PublicationEvent.objects.count(),
        StateObject.objects.count(),
    )
    assert after == before
    assert not Dataset.objects.filter(s3root="file:///etc").exists()


def test_an_agent_token_reports_for_its_own_server_only(world):
    clients, _ids, _secrets, _keys = world
    refused = clients[AGENT1].post(
        "/api/v1/servers/web2/report/",
        {"effectiveDate": "2026-01-01/00-00-00-1", "lastSucceeded": True},
        format="json",
    )
    assert refused.status_code == 403
    web2 = Server.objects.get(name="web2")
    assert web2.last_report_at is None and web2.effective_ns is None and not web2.reports.exists()
    accepted = clients[AGENT1].post("/api/v1/servers/web1/report/", {"lastSucceeded": True}, format="json")
    assert accepted.status_code in (200, 201)
    assert Server.objects.get(name="web1").last_report_at is not None


def test_no_api_key_is_stored_in_plaintext_anywhere_in_the_database(world):
    _clients, _ids, _secrets, keys = world
    found = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [name for (name,) in cursor.fetchall()]
        for table in tables:
            cursor.execute(f'SELECT row_to_json(t)::text FROM "{table}" t')  # noqa: S608 - names from pg_tables
            for (row,) in cursor.fetchall():
                found += [(table, key[:8]) for key in keys if key in row]
    assert tables and not found, f"plaintext API keys in: {found}"
    assert all(
        not re.fullmatch(r"[0-9a-f]{64}", key) for key in keys
    )  # the stored hash is not the key itself
