"""Registry backup to the state root, and blind restore into an empty database.

A backup is one gzip JSON-lines object, `backups/registry-{UTC time}.jsonl.gz`,
written to every dataset's root (or to `DMSUPDATE["BACKUP_ROOT"]` when set):
a header line, one line per row (users, datasets, servers, state objects,
publication events, API tokens (hashed), jobs, update runs, status reports,
the audit log), and a trailer with the row counts. Rows are streamed from one
consistent snapshot into a scratch file, so memory stays bounded whatever the
registry's size. Servers' agent tokens are kept as stored (the control plane
needs them to call the agents again), so `backups/` deserves the same access
control as the database.

Restore reads such a file back into an empty database in one transaction
(a truncated or foreign file changes nothing), keeping every id and audit hash
so `verify_chain` still passes, then reconciles each dataset with its bucket.
Without any backup, `rebuild_from_bucket` registers a dataset from its root alone.
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, models, transaction
from django.utils import timezone

from audit.services import record
from dmsupdate.state.keys import BACKUPS_PREFIX as BACKUP_PREFIX
from dmsupdate.state.stores import StoreError, open_store
from jobs.models import Job
from jobs.services import JobFailed, progress
from publications.models import Dataset

FORMAT = "dmsupdate-registry"
VERSION = 1
BATCH = 1000

# Dependency order: every row's foreign keys point at rows written before it.
MODELS = (
    "auth.user",
    "publications.dataset",
    "servers.server",
    "publications.stateobject",
    "publications.publicationevent",
    "accounts.apitoken",
    "jobs.job",
    "servers.updaterun",
    "servers.statusreport",
    "audit.auditevent",
)


class BackupError(Exception):
    """A backup could not be written, or a restore refused; nothing was changed."""


def model_of(label: str) -> type[models.Model]:
    return get_user_model() if label == "auth.user" else apps.get_model(label)


def _encode(value: Any) -> Any:
    # Full-precision ISO times: audit hashes are computed over `at.isoformat()`.
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _row(obj: models.Model, m2m: list[models.ManyToManyField]) -> dict:
    fields = {f.attname: _encode(f.value_from_object(obj)) for f in obj._meta.concrete_fields}
    for rel in m2m:
        fields[rel.name] = sorted(o.pk for o in getattr(obj, rel.name).all())
    return fields


def write_backup(fileobj) -> dict[str, int]:
    """Stream the whole registry as gzip JSON lines into `fileobj`; return the row counts per model."""
    counts: dict[str, int] = {}
    with gzip.GzipFile(fileobj=fileobj, mode="wb", compresslevel=6) as gz:
        out = io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
        header = {
            "format": FORMAT,
            "version": VERSION,
            "created_at": timezone.now().isoformat(),
            "models": MODELS,
        }
        out.write(json.dumps(header) + "\n")
        outermost = not connection.in_atomic_block
        with transaction.atomic():
            if connection.vendor == "postgresql" and outermost:
                # One snapshot for every table, so rows and their references agree.
                with connection.cursor() as cur:
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for label in MODELS:
                model = model_of(label)
                # Users' groups and permissions are not part of the registry (roles live on tokens).
                m2m = [] if label == "auth.user" else list(model._meta.many_to_many)
                rows = model._default_manager.order_by("pk")
                if m2m:
                    rows = rows.prefetch_related(*(f.name for f in m2m))
                n = 0
                for obj in rows.iterator(chunk_size=BATCH):
                    out.write(json.dumps({"model": label, "fields": _row(obj, m2m)}, default=str) + "\n")
                    n += 1
                counts[label] = n
        out.write(json.dumps({"end": True, "counts": counts}) + "\n")
        out.flush()
        out.detach()
    return counts


def backup_roots() -> list[tuple[str, str | None]]:
    """Where backups go: the configured root, else every dataset's root."""
    conf = settings.DMSUPDATE
    if conf.get("BACKUP_ROOT"):
        return [(conf["BACKUP_ROOT"], conf.get("BACKUP_ENDPOINT") or None)]
    roots = {(d.s3root, d.s3endpoint or None) for d in Dataset.objects.all()}
    return sorted(roots)


def backup_key(now: datetime | None = None) -> str:
    """`backups/registry-2026-11-21T01-02-03-123456Z.jsonl.gz` (sorts in time order)."""
    now = now or timezone.now()
    return f"{BACKUP_PREFIX}registry-{now:%Y-%m-%dT%H-%M-%S-%f}Z.jsonl.gz"


def backup_registry(actor: str = "system", job: Job | None = None) -> dict[str, Any]:
    """Write one backup to each backup root; audited. Returns the job result."""
    roots = backup_roots()
    if not roots:
        raise BackupError("nowhere to write a backup: no dataset exists and DMSUPDATE_BACKUP_ROOT is not set")
    key = backup_key()
    with tempfile.TemporaryDirectory(prefix="dmsupdate-backup-") as scratch:
        path = Path(scratch) / "registry.jsonl.gz"
        with path.open("wb") as f:
            counts = write_backup(f)
        size = path.stat().st_size
        written, failed = [], {}
        for n, (root, endpoint) in enumerate(roots):
            if job:
                progress(job, int(100 * n / len(roots)), f"uploading to {root}")
            try:
                store = open_store(root, endpoint)
                with path.open("rb") as body:
                    store.put_new(key, body, size)
                written.append(store.url(key))
            except StoreError as exc:
                failed[root] = str(exc)
    result = {
        "key": key,
        "size": size,
        "counts": counts,
        "written": written,
        "failed": failed,
        "summary": f"{sum(counts.values())} rows, {size} bytes, written to {len(written)} of {len(roots)} roots",
    }
    record(actor, "registry.backup", key, {k: v for k, v in result.items() if k != "summary"})
    if failed:
        raise JobFailed(result["summary"], result) if job else BackupError(result["summary"] + f": {failed}")
    return result
