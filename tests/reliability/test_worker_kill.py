"""kill -9 the django-q2 worker (a real `manage.py qcluster`) in the middle of a job.

The job must not stay `running` for ever: the stale-job sweep, run by the
cluster's own scheduler, ends it `failed` with a clear reason and an audit
row; starting the job again then succeeds.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from django.utils import timezone
from django_q.models import Schedule

from audit.models import AuditEvent
from jobs.models import Job, JobKind, JobStatus
from jobs.schedules import STALE_JOBS_TASK, ensure_schedules
from jobs.services import start_job
from publications.models import Dataset, StateObject
from tests.reliability.conftest import publish_small_history
from tests.reliability.faultproxy import Rule
from tests.test_qcluster import database_url, start_cluster, stop_cluster

pytestmark = pytest.mark.django_db(transaction=True)


def socket_inodes_to(port: int) -> set[str]:
    """Inodes of the TCP sockets connected to 127.0.0.1:port (from /proc/net/tcp)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port:
                inodes.add(fields[9])
    return inodes


def processes_connected_to(port: int, group: int) -> set[int]:
    """Processes of one process group holding a connection to `port`: the worker running the job."""
    inodes = {f"socket:[{inode}]" for inode in socket_inodes_to(port)}
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getpgid(pid) != group:
                continue
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if links & inodes:
            found.add(pid)
    return found


def wait_for(predicate, what: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise AssertionError(f"{what} did not happen within {timeout:g}s; qcluster log:\n{tail}")


def test_a_worker_killed_mid_job_leaves_the_job_failed_by_the_sweep_and_a_new_run_succeeds(
    s3_state, s3_proxy, tmp_path
):
    from django.core.management import call_command

    assert database_url()
    call_command("createcachetable", verbosity=0)
    keys = publish_small_history(s3_state)
    dataset = Dataset.objects.create(name="flood", s3root=s3_state.root, s3endpoint=s3_proxy.url)
    # The job's first listing hangs (a stalled S3): the worker is inside the job when it is killed.
    stall = s3_proxy.add(Rule(match="GET /faults-", action="stall", delay=120, times=1))
    log = tmp_path / "qcluster.log"
    cluster = start_cluster(tmp_path, DMSUPDATE_Q_BROKER="orm")
    try:
        job = start_job(JobKind.SYNC_STATE, dataset=dataset, params={"full": True})
        wait_for(lambda: stall.hits == 1, "the job's first S3 request", 120, log)
        assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING

        workers = processes_connected_to(s3_proxy.port, os.getpgid(cluster.pid))
        assert len(workers) == 1, f"expected the one worker talking to S3, found {workers}"
        (worker,) = workers
        assert worker != cluster.pid
        os.kill(worker, signal.SIGKILL)
        time.sleep(2)
        assert cluster.poll() is None, "the cluster itself must survive a worker's death"
        assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING  # nothing else would end it

        # The cluster's scheduler runs the stale-job sweep (every 5 minutes in production,
        # jobs silent for 15 minutes); here it is due now, for jobs silent for a second.
        ensure_schedules()
        Schedule.objects.filter(func=STALE_JOBS_TASK).update(
            kwargs="older_than_seconds=1", next_run=timezone.now()
        )
        wait_for(
            lambda: Job.objects.get(pk=job.pk).status != JobStatus.RUNNING,
            "the sweep ending the job",
            180,
            log,
        )
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED
        assert "stopped (no heartbeat)" in job.error
        assert job.finished_at is not None
        # The sweep writes its audit row right after ending the job, in the worker process.
        wait_for(
            lambda: AuditEvent.objects.filter(action="job.sync_state.failed", details__job=job.pk).exists(),
            "the sweep's audit row",
            30,
            log,
        )

        # Started again (the retry an operator or the next schedule makes), the job runs to the end.
        Schedule.objects.filter(func=STALE_JOBS_TASK).update(kwargs="")
        retry = start_job(JobKind.SYNC_STATE, dataset=dataset, params={"full": True})
        wait_for(lambda: Job.objects.get(pk=retry.pk).finished, "the retried job finishing", 180, log)
        retry.refresh_from_db()
        assert retry.status == JobStatus.SUCCEEDED, retry.error
        # The cluster's own schedules may add a registry backup (backups/), which the registry leaves out.
        in_bucket = {info.key for info in s3_state.store.list("") if not info.key.startswith("backups/")}
        assert set(keys) <= in_bucket
        assert retry.result["new"] == len(in_bucket)
        assert set(StateObject.objects.filter(dataset=dataset).values_list("key", flat=True)) == in_bucket
        assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED  # the killed run is not revived
    finally:
        stop_cluster(cluster)
