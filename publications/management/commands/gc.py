"""`manage.py gc [--dry-run] [--dataset D] [--force]`: collect expired and unpublished objects."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from jobs.models import JobKind, JobStatus
from jobs.services import start_job
from publications.models import Dataset


class Command(BaseCommand):
    help = (
        "Expire updates covered by kept images and images beyond the kept count, and delete what "
        "has been expired or unpublished for longer than the grace period (each dataset's GC policy). "
        "Updates a server still needs are kept unless --force; the dry run names the servers a "
        "forced run would leave needing a rebuild."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="list what would be expired and deleted")
        parser.add_argument("--dataset", help="only this dataset (default: every dataset)")
        parser.add_argument(
            "--force", action="store_true", help="also collect updates that lagging servers still need"
        )

    def handle(self, *args, **opts) -> None:
        dataset = None
        if opts["dataset"]:
            dataset = Dataset.objects.filter(name=opts["dataset"]).first()
            if dataset is None:
                raise CommandError(f"no dataset named {opts['dataset']!r}")
        job = start_job(
            JobKind.GC,
            dataset=dataset,
            params={"dry_run": opts["dry_run"], "force": opts["force"]},
            actor=f"{getpass.getuser()} (manage.py)",
            run_now=True,
        )
        for name, entry in (job.result.get("datasets") or {}).items():
            self._show(name, entry)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"GC job #{job.pk} failed: {job.error}")
        self.stdout.write(f"job #{job.pk}: {job.result.get('summary', '')}")

    def _show(self, name: str, entry: dict) -> None:
        dry = entry.get("dry_run")
        self.stdout.write(f"{name}{' (dry run)' if dry else ''}")
        self.stdout.write(f"  kept images: {', '.join(entry['kept_images']) or 'none'}")
        for title, keys, count in (
            ("would expire" if dry else "expired", entry["expire"], entry["expire_count"]),
            (
                "would delete" if dry else "deleted",
                entry["delete"] if dry else entry["deleted"],
                entry["delete_count"] if dry else entry["deleted_count"],
            ),
            ("failed to delete", entry.get("failed") or [], len(entry.get("failed") or [])),
        ):
            if not count:
                continue
            self.stdout.write(f"  {title} ({count}):")
            for key in keys:
                self.stdout.write(f"    {key}")
            if count > len(keys):
                self.stdout.write(f"    ... and {count - len(keys)} more")
        for server, n in sorted(entry.get("held_for", {}).items()):
            self.stdout.write(
                f"  kept for lagging server {server}: {n} updates (use --force to collect them)"
            )
        if entry.get("rebuild_servers"):
            verb = "would need" if dry else "need"
            self.stdout.write(
                f"  {verb} a rebuild from the newest image: {', '.join(entry['rebuild_servers'])}"
            )
        if entry.get("error"):
            self.stdout.write(f"  error: {entry['error']}")
