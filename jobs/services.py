"""Starting background jobs and reporting their progress.

A job is a row (what, for whom, progress, result) plus a django-q2 task that
runs it. Runners are plain functions `run(job) -> dict` that each app registers
for its kinds (jobs.registry); the dict becomes the job's result. Every start
and end is written to the audit log.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.utils import timezone

from audit.middleware import request_id_scope
from audit.services import record
from jobs.models import Job, JobStatus
from jobs.registry import registered, runner_of
from jobs.signals import job_finished

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a job's own write waits out a busy or briefly absent database before giving up:
# longer than SQLite's lock wait (settings) and a PostgreSQL restart.
BOOKKEEPING_SECONDS = 120.0


class JobFailed(Exception):
    """Raised by a runner to end its job `failed` with a clear message and a partial result."""

    def __init__(self, message: str, result: dict | None = None) -> None:
        super().__init__(message)
        self.result = result or {}


def start_job(
    kind: str,
    *,
    dataset: Any = None,
    server: Any = None,
    params: dict | None = None,
    user: Any = None,
    actor: str = "system",
    run_now: bool = False,
) -> Job:
    """Create a queued job, audit it, and hand it to the django-q2 cluster.

    With `run_now` the job runs in this process instead (management commands).
    """
    if not registered(kind):
        raise ValueError(f"no runner is registered for job kind {kind!r}")
    job = Job.objects.create(
        kind=kind,
        dataset=dataset,
        server=server,
        params=params or {},
        requested_by=user if getattr(user, "is_authenticated", False) else None,
        actor=actor,
    )
    target = server.name if server is not None else (dataset.name if dataset is not None else "")
    record(actor, f"job.{kind}.requested", target, {"job": job.pk, "params": job.params})
    if run_now:
        run_job(job.pk)
        job.refresh_from_db()
        return job
    from django_q.tasks import async_task

    task_id = async_task("jobs.tasks.run_job_task", job.pk, task_name=f"job-{job.pk}")
    Job.objects.filter(pk=job.pk).update(task_id=str(task_id or ""))
    return job


def bookkeeping(write: Callable[[], T], limit: float = BOOKKEEPING_SECONDS) -> T:
    """Run one of a job's own database writes, again after a pause when the database is busy or away.

    A job must not fail for its bookkeeping: SQLite answers "database is locked" while
    another process writes, PostgreSQL may restart or cancel a statement. `write` opens
    its own transaction (called outside any), so a retry starts clean. Raises the last
    error after `limit` seconds.
    """
    deadline = time.monotonic() + limit
    pause = 0.05
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + pause > deadline or connection.in_atomic_block:
                raise
            log.warning("database busy or away (%s); writing again in %.2f s", exc, pause)
            connection.close_if_unusable_or_obsolete()
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def progress(job: Job, percent: int, text: str = "", partial: dict | None = None) -> None:
    """Record progress (0-100) and a heartbeat; read by the dashboard and GET /api/v1/jobs/{id}/.

    `partial` is the result so far (a fleet job's per-server table while it runs); the
    final result replaces it. A progress write that fails is logged, never fatal.
    """
    percent = max(0, min(100, int(percent)))
    fields: dict[str, Any] = {
        "progress": percent,
        "progress_text": text[:500],
        "heartbeat_at": timezone.now(),
    }
    if partial is not None:
        fields["result"] = partial
    try:
        bookkeeping(
            lambda: Job.objects.filter(pk=job.pk).update(**{**fields, "heartbeat_at": timezone.now()})
        )
    except DatabaseError as exc:
        log.warning("progress of job %s not recorded: %s", job.pk, exc)
    job.progress, job.progress_text = percent, text


def run_job(job_id: int) -> None:
    """Run one job to its end; a job never stays `running` after its runner returns or raises."""
    claimed = bookkeeping(
        lambda: Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now()
        )
    )
    if not claimed:
        log.info("job %s is not queued any more; not running it twice", job_id)
        return
    job = Job.objects.select_related("dataset", "server").get(pk=job_id)
    target = job.server.name if job.server else (job.dataset.name if job.dataset else "")
    with request_id_scope(f"job-{job.pk}"):
        try:
            result = runner_of(job.kind)(job) or {}
        except JobFailed as exc:
            _finish(job, JobStatus.FAILED, exc.result, str(exc))
        except Exception as exc:  # noqa: BLE001 - a job must end failed, whatever went wrong
            log.error("job %s failed: %s\n%s", job.pk, exc, traceback.format_exc())
            _finish(job, JobStatus.FAILED, {}, f"{exc.__class__.__name__}: {exc}")
        else:
            _finish(job, JobStatus.SUCCEEDED, result, "")
    job.refresh_from_db()
    job_finished.send(Job, job_id=job.pk, status=job.status)
    bookkeeping(
        lambda: record(
            job.actor or "system",
            f"job.{job.kind}.{job.status}",
            target,
            {"job": job.pk, "error": job.error, "summary": job.result.get("summary", "")},
        )
    )


def _finish(job: Job, status: str, result: dict, error: str) -> None:
    now = timezone.now()
    bookkeeping(
        lambda: Job.objects.filter(pk=job.pk).update(
            status=status,
            result=result,
            error=error[:10000],
            progress=100 if status == JobStatus.SUCCEEDED else job.progress,
            progress_text="" if status == JobStatus.SUCCEEDED else job.progress_text,
            finished_at=now,
            heartbeat_at=now,
        )
    )


def fail_stale_jobs(older_than_seconds: int) -> int:
    """Mark `running` jobs whose worker stopped sending heartbeats as failed (a killed worker)."""
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    stale = Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff)
    n = 0
    for job in stale:
        failed = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED,
            error="the worker running this job stopped (no heartbeat); start it again",
            finished_at=timezone.now(),
        )
        n += failed
        record("system", f"job.{job.kind}.failed", "", {"job": job.pk, "error": "worker lost"})
        if failed:
            job_finished.send(Job, job_id=job.pk, status=JobStatus.FAILED)
    return n
