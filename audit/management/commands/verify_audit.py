"""`manage.py verify_audit`: walk the hash chain; exit 1 at the first broken link."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from audit.services import verify_chain


class Command(BaseCommand):
    help = "Check the audit log's hash chain; print OK and the count, or the first broken row."

    def handle(self, *args, **opts) -> None:
        check = verify_chain()
        if check.ok:
            self.stdout.write(f"OK: {check.checked} audit events, hash chain intact")
            return
        self.stderr.write(
            f"BROKEN: audit event {check.broken_id}: {check.reason} "
            f"({check.checked} events before it are intact)"
        )
        sys.exit(1)
