"""`manage.py sync_state [--dataset NAME] [--full]`: reconcile the registry with the state roots."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from publications.models import Dataset
from publications.sync import SyncError, sync_dataset


class Command(BaseCommand):
    help = "Register new keys of each dataset's state root; with --full also find keys gone missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", help="only this dataset (default: all)")
        parser.add_argument(
            "--full",
            action="store_true",
            help="list the whole root: marks vanished keys missing and finds keys below the cursor",
        )

    def handle(self, *args, dataset: str | None = None, full: bool = False, **options) -> None:
        datasets = Dataset.objects.all()
        if dataset:
            datasets = datasets.filter(name=dataset)
            if not datasets.exists():
                raise CommandError(f"no dataset named {dataset!r}")
        failures = []
        for ds in datasets:
            try:
                result = sync_dataset(ds, full=full)
            except SyncError as exc:
                failures.append(str(exc))
                self.stderr.write(f"sync_state: {ds.name}: {exc}")
                continue
            self.stdout.write(result.summary)
        if failures:
            raise CommandError(f"{len(failures)} dataset(s) could not be synced")
