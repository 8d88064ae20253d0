"""Job runners of the operations app: the registry backup."""

from __future__ import annotations

from typing import Any

from jobs.models import Job, JobKind
from jobs.registry import runs
from jobs.services import JobFailed
from operations.backup import BackupError, backup_registry


@runs(JobKind.BACKUP)
def run_backup_job(job: Job) -> dict[str, Any]:
    """Runner of `backup` jobs (scheduled daily, or on request)."""
    try:
        return backup_registry(actor=job.actor or "system", job=job)
    except BackupError as exc:
        raise JobFailed(str(exc)) from exc
