"""`manage.py verify_audit`: walk the hash chain and check its head against the newest signed backup; exit 1 if broken."""

from __future__ import annotations

import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from audit.services import verify_chain
from operations.restore import newest_anchor


class Command(BaseCommand):
    help = (
        "Check the audit log's hash chain, and that it still holds the head recorded with the newest "
        "signed registry backup; print OK and the count, or what is broken."
    )

    def handle(self, *args, **opts) -> None:
        conf = settings.DMSUPDATE
        anchor = newest_anchor(conf["BACKUP_ROOT"], conf.get("BACKUP_ENDPOINT") or None)
        check = verify_chain(anchor=anchor)
        if check.ok:
            where = (
                f"; head of the backup of event {anchor.id} found"
                if anchor
                else "; no signed backup to anchor it"
            )
            self.stdout.write(f"OK: {check.checked} audit events, hash chain intact{where}")
            return
        at = f"audit event {check.broken_id}: " if check.broken_id else ""
        self.stderr.write(f"BROKEN: {at}{check.reason} ({check.checked} events checked)")
        sys.exit(1)
