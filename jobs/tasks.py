"""django-q2 entry points for jobs: thin, they load by id and call a service."""

from __future__ import annotations

from jobs.services import fail_stale_jobs, run_job


def run_job_task(job_id: int) -> None:
    run_job(job_id)


def fail_stale_jobs_task(older_than_seconds: int = 900) -> int:
    return fail_stale_jobs(older_than_seconds)
