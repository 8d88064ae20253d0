"""`manage.py build_image DATASET [--force]`: publish a clean image and dump of a dataset's current state."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from jobs.models import JobKind, JobStatus
from jobs.services import start_job
from publications.models import Dataset


class Command(BaseCommand):
    help = (
        "Replay the newest image and every later update in a scratch store (the agent's own replay), "
        "then publish the result under images/ as an image (tgz) and a dump (nq.gz) stamped with the "
        "time of the last update included."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("dataset", help="the dataset's name")
        parser.add_argument(
            "--force", action="store_true", help="build even when the newest image includes every update"
        )

    def handle(self, *args, **opts) -> None:
        dataset = Dataset.objects.filter(name=opts["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset named {opts['dataset']!r}")
        job = start_job(
            JobKind.BUILD_IMAGE,
            dataset=dataset,
            params={"force": opts["force"]},
            actor=f"{getpass.getuser()} (manage.py)",
            run_now=True,
        )
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"build_image job #{job.pk} failed: {job.error}")
        result = job.result
        if result.get("built"):
            self.stdout.write(f"image: {result['image']} ({result['image_size']} bytes)")
            self.stdout.write(
                f"dump:  {result['dump']} ({result['dump_size']} bytes, {result['quads']} quads)"
            )
        self.stdout.write(f"job #{job.pk}: {result.get('summary', '')}")
