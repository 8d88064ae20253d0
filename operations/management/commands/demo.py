"""`manage.py demo`: build the sample dataset, users, servers and agents (see operations.demo)."""

from __future__ import annotations

import logging
import os

from django.core.management.base import BaseCommand, CommandError, CommandParser

from operations.demo import SERVERS, build_demo, demo_dir


class Command(BaseCommand):
    help = (
        "Build a sample flood-monitoring dataset under var/demo/state, an admin login, "
        "and three servers whose agents stopped at different points of the replay. "
        "Running it again starts the demo afresh."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port",
            type=int,
            default=int(os.environ.get("DMSUPDATE_DEMO_PORT") or 8000),
            help="port the control plane will listen on (agents report there; default 8000)",
        )
        parser.add_argument("--days", type=int, default=3, help="days of updates after the dump (default 3)")
        parser.add_argument("--stations", type=int, default=40, help="gauging stations (default 40)")

    def handle(self, *args, port: int, days: int, stations: int, **options) -> None:
        if not 0 < port < 65536:
            raise CommandError(f"--port must be 1-65535, not {port}")
        if not 1 <= days <= 30 or not 1 <= stations <= 1000:
            raise CommandError("--days must be 1-30 and --stations 1-1000")
        if options["verbosity"] < 2:
            # The agents log every operation they apply; the summary lines say enough here.
            logging.getLogger("dmsupdate.agent").setLevel(logging.WARNING)
            logging.getLogger("publications.sync").setLevel(logging.WARNING)
        result = build_demo(port=port, days=days, stations=stations, say=self.stdout.write)
        self.stdout.write(
            f"dataset {result.dataset.name}: {result.keys} objects under {result.dataset.s3root}"
        )
        for name in SERVERS:
            self.stdout.write(f"agent {name}: {demo_dir() / 'agents' / name / 'config.json'}")
        self.stdout.write(f"login: admin / {result.admin_password}")
        self.stdout.write(f"viewer login: viewer / {result.viewer_password}")
        self.stdout.write(f"(saved in {demo_dir() / 'login.txt'}; start it all with `manage.py run_demo`)")
