"""Concurrent publications to one dataset get distinct, strictly increasing effective times."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from dmsupdate.state.keys import parse_key
from jobs.models import Job, JobKind
from publications.models import ObjectState, StateObject
from tests.api.fixtures import stored_keys

N = 50


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_publications_get_fifty_increasing_times(live_server, publisher, dataset):
    url = f"{live_server.url}/api/v1/publications/?dataset=flood&op=update&label=feed"
    headers = {"Authorization": f"Token {publisher.key}", "Content-Type": "application/sparql-update"}

    def publish(i: int) -> requests.Response:
        body = f"INSERT DATA {{ <http://example.org/s{i}> <http://example.org/p> {i} }}"
        return requests.post(url, data=body.encode(), headers=headers, timeout=120)

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(publish, range(N)))

    assert [a.status_code for a in answers] == [201] * N, [a.text for a in answers if a.status_code != 201]
    times = [a.json()["effective_ns"] for a in answers]
    assert len(set(times)) == N
    # Allocation order (registry row ids) is time order: no later row got an earlier time.
    rows = list(StateObject.objects.filter(dataset=dataset).order_by("id"))
    row_times = [r.effective_ns for r in rows]
    assert row_times == sorted(set(row_times))  # strictly increasing in allocation order
    assert {r.state for r in rows} == {ObjectState.PUBLISHED}
    assert sorted(stored_keys(dataset)) == sorted(a.json()["key"] for a in answers)
    assert sorted(parse_key(k).effective.nanos for k in stored_keys(dataset)) == sorted(times)
    # The burst queued a single update of the dataset's servers.
    assert Job.objects.filter(kind=JobKind.UPDATE_ALL, dataset=dataset).count() == 1
