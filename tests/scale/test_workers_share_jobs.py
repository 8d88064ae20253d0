"""Several qcluster processes on one queue share the jobs and never run one twice (ORM broker and Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.core.management import call_command

from audit.services import verify_chain
from jobs.models import Job, JobStatus
from tests.scale.recording import PROBE_KIND
from tests.test_qcluster import REDIS_URL, database_url, redis_broker, stop_cluster

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = 3
JOBS = 40

pytestmark = pytest.mark.django_db(transaction=True)


def start_clusters(tmp_path: Path, **env: str) -> list[subprocess.Popen]:
    """CLUSTERS `manage.py qcluster` processes (one worker each), each in its own process group."""
    procs = []
    for n in range(CLUSTERS):
        log = open(tmp_path / f"qcluster-{n}.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=ROOT,
                env={
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "DATABASE_URL": database_url(),
                    "DMSUPDATE_Q_WORKERS": "1",
                    **env,
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    return procs


def logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- qcluster-{n}\n" + (tmp_path / f"qcluster-{n}.log").read_text(errors="replace")[-3000:]
        for n in range(CLUSTERS)
    )


def wait_running(procs: list[subprocess.Popen], tmp_path: Path, timeout: float = 60) -> None:
    """Until every cluster says it runs, so the jobs are offered to all of them at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        texts = [(tmp_path / f"qcluster-{n}.log").read_text(errors="replace") for n in range(CLUSTERS)]
        if all(" running." in t for t in texts):
            return
        time.sleep(0.2)
    raise AssertionError(f"the clusters did not all start:\n{logs(tmp_path)}")


def wait_all_finished(ids: list[int], queue_size, tmp_path: Path, timeout: float = 120) -> None:
    """Until every job has ended and the queue holds no task (the duplicates are consumed too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = Job.objects.filter(pk__in=ids, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).count()
        if done == len(ids) and queue_size() == 0:
            return
        time.sleep(0.3)
    states = Counter(Job.objects.filter(pk__in=ids).values_list("status", flat=True))
    raise AssertionError(f"jobs not finished after {timeout}s: {dict(states)}\n{logs(tmp_path)}")


def probe_jobs(tmp_path: Path) -> tuple[list[Job], Path]:
    ledger = tmp_path / "ledger.txt"
    jobs = [
        Job.objects.create(
            kind=PROBE_KIND, params={"ledger": str(ledger), "seconds": 0.05}, actor="scale-test"
        )
        for _ in range(JOBS)
    ]
    return jobs, ledger


def enqueue_twice(jobs: list[Job], broker) -> None:
    """Each job goes on the queue twice: the second task must find it claimed and do nothing."""
    from django_q.tasks import async_task

    for job in jobs + jobs:
        async_task("tests.scale.recording.run_probe_task", job.pk, broker=broker)


def assert_each_ran_once_on_several_workers(jobs: list[Job], ledger: Path) -> None:
    runs = [line.split() for line in ledger.read_text().splitlines()]
    per_job = Counter(int(job_id) for job_id, _ in runs)
    assert per_job == Counter({job.pk: 1 for job in jobs})
    statuses = Counter(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True))
    assert statuses == Counter({JobStatus.SUCCEEDED: JOBS})
    workers = {pid for _, pid in runs}
    assert len(workers) >= 2, f"one worker ran every job: {workers}"
    # Three processes appended audit events at once: the hash chain is still whole.
    assert verify_chain().ok


def test_three_clusters_on_the_orm_broker_share_40_jobs_running_each_exactly_once(tmp_path):
    from django_q.brokers.orm import ORM

    call_command("createcachetable", verbosity=0)
    queue = f"scale-{uuid.uuid4().hex[:12]}"
    broker = ORM(list_key=queue)
    procs = start_clusters(tmp_path, DMSUPDATE_Q_BROKER="orm", DMSUPDATE_Q_QUEUE=queue)
    try:
        wait_running(procs, tmp_path)
        jobs, ledger = probe_jobs(tmp_path)
        enqueue_twice(jobs, broker)
        wait_all_finished([j.pk for j in jobs], lambda: broker.queue_size() + broker.lock_size(), tmp_path)
    finally:
        for proc in procs:
            stop_cluster(proc)
        broker.delete_queue()

    assert_each_ran_once_on_several_workers(jobs, ledger)


def test_three_clusters_on_redis_share_40_jobs_running_each_exactly_once(tmp_path):
    broker, queue = redis_broker("scale")
    procs = start_clusters(tmp_path, DMSUPDATE_Q_BROKER=REDIS_URL, DMSUPDATE_Q_QUEUE=queue)
    try:
        wait_running(procs, tmp_path)
        jobs, ledger = probe_jobs(tmp_path)
        enqueue_twice(jobs, broker)
        wait_all_finished([j.pk for j in jobs], broker.queue_size, tmp_path)
    finally:
        for proc in procs:
            stop_cluster(proc)
        broker.delete_queue()

    assert_each_ran_once_on_several_workers(jobs, ledger)
