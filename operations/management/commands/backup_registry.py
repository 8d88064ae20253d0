"""`manage.py backup_registry`: write the registry and audit log under `backups/` in the state root(s)."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from jobs.models import JobKind, JobStatus
from jobs.services import start_job


class Command(BaseCommand):
    help = (
        "Write one timestamped gzip JSON-lines backup of the registry (datasets, servers, objects, "
        "publications, tokens' hashes, jobs, update runs, audit log) to each dataset's state root, "
        "or to DMSUPDATE_BACKUP_ROOT when set."
    )

    def handle(self, *args, **opts) -> None:
        job = start_job(JobKind.BACKUP, actor=f"{getpass.getuser()} (manage.py)", run_now=True)
        for url in job.result.get("written", []):
            self.stdout.write(f"written: {url}")
        for root, error in (job.result.get("failed") or {}).items():
            self.stdout.write(f"failed:  {root}: {error}")
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"backup job #{job.pk} failed: {job.error}")
        self.stdout.write(f"job #{job.pk}: {job.result.get('summary', '')}")
