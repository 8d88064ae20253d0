"""django-q2 entry points of the operations app: thin, they start a job."""

from __future__ import annotations

from jobs.models import JobKind
from jobs.services import start_job


def backup_task() -> dict:
    """Scheduled registry backup, as a job; returns its result."""
    return start_job(JobKind.BACKUP, actor="schedule", run_now=True).result
