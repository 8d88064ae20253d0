"""Per-token throttling (429 with Retry-After), the OpenAPI schema, and JSON errors for odd requests."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from drf_spectacular.validation import validate_schema

from accounts.throttles import TokenRateThrottle
from tests.api.fixtures import make_caller


@pytest.fixture
def three_per_minute(monkeypatch):
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "3/min"})
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
def test_each_token_is_throttled_on_its_own_with_retry_after(three_per_minute, viewer):
    answers = [viewer.client.get("/api/v1/datasets/") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["error"] == "throttled"
    assert 1 <= int(answers[-1]["Retry-After"]) <= 60
    other = make_caller("another", "viewer")
    assert other.client.get("/api/v1/datasets/").status_code == 200


@pytest.mark.django_db
def test_schema_is_valid_openapi_3_and_lists_the_contract_paths(client):
    answer = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert answer.status_code == 200
    schema = answer.json()
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    for path in [
        "/api/v1/publications/",
        "/api/v1/publications/{id}/",
        "/api/v1/datasets/",
        "/api/v1/datasets/{name}/",
        "/api/v1/datasets/{name}/update-all/",
        "/api/v1/servers/",
        "/api/v1/servers/{name}/",
        "/api/v1/servers/{name}/update/",
        "/api/v1/servers/{name}/rebuild/",
        "/api/v1/servers/{name}/report/",
        "/api/v1/jobs/{id}/",
        "/api/v1/objects/",
        "/api/v1/audit/",
    ]:
        assert path in schema["paths"], path
    assert client.get("/api/v1/docs/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/v1/publications/999999/", 404),
        ("get", "/api/v1/jobs/abc/", 404),
        ("get", "/api/v1/objects/?kind=banana", 400),
        ("get", "/api/v1/objects/?since=soon", 400),
        ("delete", "/api/v1/datasets/flood/", 405),
        ("put", "/api/v1/servers/web1/", 405),
        ("get", "/api/v1/publications/?limit=abc", 200),
    ],
)
def test_odd_requests_get_json_errors_never_500(operator, dataset, two_servers, method, path, status):
    answer = getattr(operator.client, method)(path)
    assert answer.status_code == status, answer.content
    if status >= 400:
        assert set(answer.json()) >= {"error", "detail"}


@pytest.mark.django_db
def test_dataset_creation_checks_the_root(operator):
    for root in ("ftp://nope", "s3://[bucket", "file://relative/path", "s3://"):
        bad = operator.client.post("/api/v1/datasets/", {"name": "x", "s3root": root}, format="json")
        assert bad.status_code == 400 and "s3root" in bad.json()["fields"], root
    good = operator.client.post(
        "/api/v1/datasets/", {"name": "lakes", "s3root": "s3://bucket/lakes/"}, format="json"
    )
    assert good.status_code == 201 and good.json()["s3root"] == "s3://bucket/lakes"


@pytest.mark.django_db
def test_objects_list_filters_by_dataset_kind_state_label_and_since(viewer, dataset, two_servers):
    from tests.api.test_servers_api import T0, publish_rows

    publish_rows(dataset, 0, 10, 20)
    since = "2026-01-15T04:00:11.262711077Z"
    rows = viewer.client.get(
        "/api/v1/objects/",
        {"dataset": "flood", "kind": "update", "state": "published", "label": "x", "since": since},
    ).json()
    assert [r["effective_ns"] for r in rows["results"]] == [T0 + 10 * 10**9, T0 + 20 * 10**9]
    assert rows["results"][0]["effective_time"] == since


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("post", "/api/v1/servers/", {"name": "x", "dataset": "flo\x00od"}),
        ("get", "/api/v1/objects/?label=a%00b", None),
        ("post", "/api/v1/publications/?dataset=fl%00ood&op=update&label=x", None),
    ],
)
def test_values_postgresql_cannot_hold_are_400_not_500(operator, method, path, data):
    answer = getattr(operator.client, method)(path, data, format="json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"] in ("invalid_value", "invalid")


@pytest.mark.django_db
def test_a_time_offset_beyond_postgresqls_range_is_sent_as_utc_and_answered(operator):
    """Parameters are bound by the server: the driver sends the instant in UTC, which PostgreSQL holds."""
    answer = operator.client.get("/api/v1/audit/?since=0434-12-09T06%3A30%3A12%2B22%3A14")
    assert answer.status_code == 200, answer.content
    assert answer.json()["results"] == []
