"""The per-token throttle's shared budget: a burst of N, then one request every period/N, atomically."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from rest_framework.test import APIRequestFactory

from accounts import throttles
from accounts.models import ThrottleBucket
from accounts.throttles import TokenRateThrottle


class Clock:
    """time.time() for the throttle, moved by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(throttles, "time", clock)
    return clock


@pytest.fixture
def three_per_minute(monkeypatch):
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "3/min"})


def allowed(token) -> tuple[bool, float | None]:
    request = APIRequestFactory().get("/api/v1/datasets/")
    request.auth, request.user = token, token.user
    throttle = TokenRateThrottle()
    return throttle.allow_request(request, None), throttle.wait()


@pytest.mark.django_db
def test_a_burst_of_the_rate_passes_then_one_request_per_share_of_the_period(three_per_minute, clock, viewer):
    assert [allowed(viewer.token)[0] for _ in range(3)] == [True, True, True]
    refused, wait = allowed(viewer.token)
    assert refused is False
    assert wait == pytest.approx(20.0)  # one share of the minute: 60 s / 3
    clock.now += 19
    assert allowed(viewer.token)[0] is False
    clock.now += 1
    assert allowed(viewer.token)[0] is True
    assert allowed(viewer.token)[0] is False
    clock.now += 60
    assert [allowed(viewer.token)[0] for _ in range(4)] == [True, True, True, False]


@pytest.mark.django_db
def test_a_refusal_answers_429_with_the_seconds_until_the_next_share(three_per_minute, clock, viewer):
    answers = [viewer.client.get("/api/v1/datasets/") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["error"] == "throttled"
    assert answers[-1]["Retry-After"] == "20"


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_on_separate_connections_never_exceed_the_budget(three_per_minute, viewer):
    """Each thread has its own database connection, as each web process does: the upsert is the arbiter."""
    results: list[bool] = []
    start = threading.Barrier(12)

    def call() -> None:
        try:
            start.wait()
            results.append(allowed(viewer.token)[0])
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 9 + [True] * 3
    assert ThrottleBucket.objects.count() == 1


@pytest.mark.django_db
def test_the_budgets_table_writes_no_wal_on_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("UNLOGGED tables are PostgreSQL's")
    with connection.cursor() as cur:
        cur.execute("SELECT relpersistence FROM pg_class WHERE relname = %s", [ThrottleBucket._meta.db_table])
        assert cur.fetchone() == ("u",)
