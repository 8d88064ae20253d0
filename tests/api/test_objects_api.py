"""The object registry over the API: filters, key order within a dataset, and counts bounded at scale."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Role
from dmsupdate.state.keys import EffectiveTime, format_key
from publications.api import pagination
from publications.models import Dataset, ObjectState, StateObject
from tests.api.fixtures import make_caller

T0 = EffectiveTime.parse_text("2026-01-15T04:00:00Z").nanos


def register(dataset: Dataset, seconds: list[int], state: str = ObjectState.PUBLISHED) -> list[str]:
    """Registry rows of updates `seconds` after T0 (added in the given order); their keys."""
    keys = [format_key(EffectiveTime(T0 + s * 1_000_000_000), "feed", "update", None, "ru") for s in seconds]
    now = timezone.now()
    StateObject.objects.bulk_create(StateObject.for_key(dataset, k, state, now) for k in keys)
    return keys


@pytest.fixture
def viewer(db):
    return make_caller("vera", Role.VIEWER).client


@pytest.fixture
def two_datasets(db) -> tuple[Dataset, Dataset]:
    # Created in the opposite order of their names: the list follows the datasets' ids.
    return (
        Dataset.objects.create(name="zeta", s3root="file:///srv/zeta"),
        Dataset.objects.create(name="alpha", s3root="file:///srv/alpha"),
    )


def keys_of(answer) -> list[str]:
    return [row["key"] for row in answer.json()["results"]]


def test_one_dataset_lists_in_key_order_with_an_exact_count(viewer, two_datasets):
    zeta, alpha = two_datasets
    zeta_keys = register(zeta, [30, 10, 20])
    register(alpha, [5])
    answer = viewer.get("/api/v1/objects/", {"dataset": "zeta"})
    assert answer.status_code == 200
    assert keys_of(answer) == sorted(zeta_keys)
    assert answer.json()["count"] == 3
    assert "count_more_than" not in answer.json()


def test_the_whole_registry_lists_dataset_by_dataset_in_key_order(viewer, two_datasets):
    zeta, alpha = two_datasets
    zeta_keys = register(zeta, [2, 1])
    alpha_keys = register(alpha, [4, 3])
    assert keys_of(viewer.get("/api/v1/objects/")) == sorted(zeta_keys) + sorted(alpha_keys)


def test_filters_combine_and_an_unknown_dataset_lists_nothing(viewer, two_datasets):
    zeta, _ = two_datasets
    published = register(zeta, [1, 2, 3])
    expired = register(zeta, [4], ObjectState.EXPIRED)
    assert keys_of(viewer.get("/api/v1/objects/", {"dataset": "zeta", "state": "expired"})) == expired
    since = EffectiveTime(T0 + 2 * 1_000_000_000).to_datetime().isoformat()
    assert (
        keys_of(viewer.get("/api/v1/objects/", {"dataset": "zeta", "since": since}))
        == published[1:] + expired
    )
    assert keys_of(viewer.get("/api/v1/objects/", {"since": since, "state": "published"})) == published[1:]
    nothing = viewer.get("/api/v1/objects/", {"dataset": "nope"})
    assert nothing.status_code == 200 and nothing.json()["count"] == 0 and nothing.json()["results"] == []


def test_past_the_count_limit_count_is_null_and_next_pages_reach_every_row(viewer, two_datasets, monkeypatch):
    zeta, _ = two_datasets
    keys = register(zeta, list(range(7)))
    monkeypatch.setattr(pagination.BoundedCountPagination, "count_limit", 5)
    seen, url = [], "/api/v1/objects/?dataset=zeta&limit=3"
    while url:
        answer = viewer.get(url).json()
        assert answer["count"] is None and answer["count_more_than"] == 5
        seen += [row["key"] for row in answer["results"]]
        url = answer["next"]
    assert seen == sorted(keys)


def test_a_page_of_a_dataset_takes_the_same_queries_whatever_its_size(viewer, two_datasets):
    zeta, _ = two_datasets
    register(zeta, list(range(3)))
    viewer.get("/api/v1/objects/")  # the token's first request also creates its throttle row
    with CaptureQueriesContext(connection) as small:
        assert viewer.get("/api/v1/objects/", {"dataset": "zeta", "limit": 2}).status_code == 200
    register(zeta, list(range(3, 300)))
    with CaptureQueriesContext(connection) as large:
        assert viewer.get("/api/v1/objects/", {"dataset": "zeta", "limit": 2}).status_code == 200
    assert len(large.captured_queries) == len(small.captured_queries)
