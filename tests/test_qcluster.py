"""A real django-q2 worker (`manage.py qcluster`) runs queued jobs, on the ORM broker and on Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from dmsupdate.state.keys import EffectiveTime, format_key
from jobs.models import Job, JobKind, JobStatus
from jobs.services import start_job
from publications.models import Dataset, StateObject

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/0"

pytestmark = pytest.mark.django_db(transaction=True)


def redis_broker(prefix: str):
    """A django-q Redis broker on a queue of its own, and the queue's name.

    Other clusters sharing this Redis never take its tasks. Fails the test when Redis
    does not answer; creates the cache table the clusters' throttles use.
    """
    import redis
    from django.core.management import call_command
    from django_q.brokers.redis_broker import Redis

    connection = redis.Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis does not answer at {REDIS_URL}: start it (.ci/run does)")
    call_command("createcachetable", verbosity=0)
    queue = f"{prefix}-{uuid.uuid4().hex[:12]}"
    broker = Redis(list_key=queue)
    broker.connection = connection
    return broker, queue


def database_url() -> str:
    """The test database, so the worker sees the rows this test commits."""
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_cluster(tmp_path: Path, **env: str) -> subprocess.Popen:
    """`manage.py qcluster` in its own process group, logging to a file."""
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url(),
        "DMSUPDATE_Q_WORKERS": "1",
        **env,
    }
    log = open(tmp_path / "qcluster.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_cluster(proc: subprocess.Popen) -> None:
    """SIGTERM to the cluster lets it stop its workers; anything left in its group is killed."""
    try:
        proc.terminate()
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def wait_finished(job: Job, proc: subprocess.Popen, tmp_path: Path, timeout: float = 90) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.finished:
            return job
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    log = (tmp_path / "qcluster.log").read_text(errors="replace")
    raise AssertionError(f"job {job.pk} is {job.status} after {timeout}s; qcluster log:\n{log[-4000:]}")


@pytest.fixture
def dataset(tmp_path) -> Dataset:
    """A file:// dataset holding three updates."""
    base = tmp_path / "state"
    for i in range(3):
        key = format_key(EffectiveTime.parse("2016-01-15", f"0{i}-00-00-0"), "readings", "update", None, "ru")
        (base / key).parent.mkdir(parents=True, exist_ok=True)
        (base / key).write_text("INSERT DATA { <a> <b> <c> }")
    return Dataset.objects.create(name="flood", s3root=f"file://{base}")


def test_qcluster_on_the_orm_broker_runs_a_queued_job_to_completion(dataset, tmp_path):
    from django.core.management import call_command

    call_command("createcachetable", verbosity=0)
    job = start_job(JobKind.SYNC_STATE, dataset=dataset, params={"full": True})
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED

    proc = start_cluster(tmp_path, DMSUPDATE_Q_BROKER="orm")
    try:
        job = wait_finished(job, proc, tmp_path)
    finally:
        stop_cluster(proc)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["new"] == 3
    assert StateObject.objects.filter(dataset=dataset).count() == 3
    assert job.started_at is not None and job.finished_at is not None


def test_qcluster_on_the_redis_broker_runs_a_queued_job_to_completion(dataset, tmp_path):
    from django_q.tasks import async_task

    broker, queue = redis_broker("test")
    job = Job.objects.create(kind=JobKind.SYNC_STATE, dataset=dataset, params={"full": True})
    async_task("jobs.tasks.run_job_task", job.pk, broker=broker)
    assert broker.queue_size() == 1

    proc = start_cluster(tmp_path, DMSUPDATE_Q_BROKER=REDIS_URL, DMSUPDATE_Q_QUEUE=queue)
    try:
        job = wait_finished(job, proc, tmp_path)
    finally:
        stop_cluster(proc)
        broker.delete_queue()

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["new"] == 3
    assert StateObject.objects.filter(dataset=dataset).count() == 3
