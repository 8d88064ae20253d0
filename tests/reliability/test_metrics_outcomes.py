"""/metrics shows what an operator alerts on: job outcomes, publications, store requests, and gaps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from accounts.models import Role
from jobs.models import Job, JobKind, JobStatus
from publications.models import Dataset
from publications.sync import sync_dataset
from servers.models import Server
from tests.agent.conftest import StateRoot, at
from tests.api.fixtures import make_caller

pytestmark = pytest.mark.django_db


def test_metrics_count_job_outcomes_publications_store_requests_and_missing_updates(client, file_root):
    state = StateRoot(*file_root)
    keys = [state.publish(i, "update", "INSERT DATA { <a> <b> <c> }", fmt="ru") for i in (1, 2, 3)]
    dataset = Dataset.objects.create(name="flood", s3root=state.root)
    sync_dataset(dataset, full=True)
    Server.objects.create(name="web1", dataset=dataset, effective_ns=at(1).nanos)
    Job.objects.create(kind=JobKind.GC, dataset=dataset, status=JobStatus.FAILED)
    Job.objects.create(kind=JobKind.GC, dataset=dataset, status=JobStatus.SUCCEEDED)
    publisher = make_caller("petra", Role.PUBLISHER)
    answer = publisher.client.generic(
        "POST",
        "/api/v1/publications/?dataset=flood&op=update&label=readings",
        "INSERT DATA { <http://example.org/x> <http://example.org/y> <http://example.org/z> }",
        content_type="application/sparql-update",
    )
    assert answer.status_code == 201, answer.content
    os.remove(Path(state.root.removeprefix("file://")) / keys[2])  # web1 still needs it
    sync_dataset(dataset, full=True)

    text = client.get("/metrics").content.decode()

    assert 'dmsupdate_jobs_total{kind="gc",status="failed"} 1.0' in text
    assert 'dmsupdate_jobs_total{kind="gc",status="succeeded"} 1.0' in text
    assert 'dmsupdate_publications_total{dataset="flood"} 1.0' in text
    assert 'dmsupdate_store_requests_total{kind="list",scheme="file"}' in text
    assert 'dmsupdate_store_requests_total{kind="put",scheme="file"}' in text
    assert 'dmsupdate_server_missing_updates{dataset="flood",server="web1"} 1.0' in text
    assert 'dmsupdate_server_state{dataset="flood",server="web1",state="failing"} 1.0' in text
