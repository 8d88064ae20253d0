"""`manage.py restore_registry [--from KEY|URL] [--root ROOT]` or `--rebuild-from-bucket --dataset NAME --root ROOT`."""

from __future__ import annotations

import getpass

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from operations.backup import BackupError
from operations.restore import rebuild_from_bucket, restore_registry, split_backup_url


class Command(BaseCommand):
    help = (
        "Restore the registry and audit log from a backup into an EMPTY database (ids and audit hashes "
        "kept), then reconcile each dataset with its bucket. Without a backup, --rebuild-from-bucket "
        "registers a dataset from the objects under its state root."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--from",
            dest="source",
            help="a backup key under --root (backups/…), or its full URL; default: the newest backup",
        )
        parser.add_argument("--root", help="the state root holding backups/ (default: DMSUPDATE_BACKUP_ROOT)")
        parser.add_argument("--endpoint", help="S3 endpoint URL of the root (S3-compatible stores)")
        parser.add_argument(
            "--rebuild-from-bucket",
            action="store_true",
            help="no backup: create --dataset on --root and register every object found there",
        )
        parser.add_argument("--dataset", help="with --rebuild-from-bucket: the dataset's name")
        parser.add_argument("--no-sync", action="store_true", help="skip the reconcile with the bucket")

    def handle(self, *args, **opts) -> None:
        actor = f"{getpass.getuser()} (manage.py)"
        conf = settings.DMSUPDATE
        endpoint = opts["endpoint"] or conf.get("BACKUP_ENDPOINT") or None
        root = opts["root"]
        key = opts["source"]
        try:
            if opts["rebuild_from_bucket"]:
                if not opts["dataset"] or not root:
                    raise CommandError("--rebuild-from-bucket needs --dataset NAME and --root ROOT")
                synced = rebuild_from_bucket(opts["dataset"], root, opts["endpoint"], actor=actor)
                for name, summary in synced.items():
                    self.stdout.write(f"{name}: {summary}")
                return
            if key and "://" in key:
                root, key = split_backup_url(key)
            root = root or conf.get("BACKUP_ROOT")
            if not root:
                raise CommandError("give --root (the state root holding backups/) or --from with a full URL")
            result = restore_registry(root, endpoint, key, actor=actor, sync=not opts["no_sync"])
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"restored from {result.key}")
        for label, n in result.counts.items():
            self.stdout.write(f"  {label}: {n}")
        for name, summary in result.synced.items():
            self.stdout.write(f"{name}: {summary}")
