"""Registry backup to the state root, and blind restore into an empty database.

A backup is one gzip JSON-lines object, `backups/registry-{UTC time}.jsonl.gz`,
written to the backup root (`DMSUPDATE["BACKUP_ROOT"]`, by default a folder under
the var directory; never a dataset's root, which its agents and publishers read):
a header line, one line per row (users, datasets, servers, state objects,
publication events, API tokens (hashed), jobs, update runs, status reports,
the audit log, webhooks), and a trailer with the row counts. Rows are streamed from one
consistent snapshot into a scratch file, so memory stays bounded whatever the
registry's size. Secrets (agent tokens, password hashes) are sealed with a
key kept outside the database and the bucket, and the backup is signed beside
it (`KEY.sig`, with the audit chain's head): see operations.sealing.

Restore reads such a file back into an empty database in one transaction
(a truncated or foreign file changes nothing), keeping every id and audit hash
so `verify_chain` still passes, then reconciles each dataset with its bucket.
Without any backup, `rebuild_from_bucket` registers a dataset from its root alone.
"""

from __future__ import annotations

import gzip
import hashlib
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

from audit.services import head, record
from dmsupdate.state.keys import BACKUPS_PREFIX as BACKUP_PREFIX
from dmsupdate.state.stores import StoreError, open_store
from jobs.models import Job
from jobs.services import JobFailed, progress
from operations.sealing import SECRET_FIELDS, seal, signature
from publications.models import Dataset

FORMAT = "dmsupdate-registry"
VERSION = 1
BATCH = 1000
SIGNATURE_SUFFIX = ".sig"

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
    "notifications.webhook",
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


def _row(obj: models.Model, m2m: list[models.ManyToManyField], sealed: tuple[str, ...] = ()) -> dict:
    fields = {f.attname: _encode(f.value_from_object(obj)) for f in obj._meta.concrete_fields}
    for name in sealed:
        fields[name] = seal(fields[name])
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
                    row = _row(obj, m2m, SECRET_FIELDS.get(label, ()))
                    out.write(json.dumps({"model": label, "fields": row}, default=str) + "\n")
                    n += 1
                counts[label] = n
        out.write(json.dumps({"end": True, "counts": counts}) + "\n")
        out.flush()
        out.detach()
    return counts


def _overlaps(root: str, other: str) -> bool:
    a, b = root.rstrip("/") + "/", other.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def backup_roots() -> list[tuple[str, str | None]]:
    """Where backups go: the configured backup root, refused when it lies in or over a dataset's root."""
    conf = settings.DMSUPDATE
    root = conf.get("BACKUP_ROOT") or ""
    if not root:
        raise BackupError("no backup root: set DMSUPDATE_BACKUP_ROOT")
    for dataset in Dataset.objects.all():
        if _overlaps(root, dataset.s3root):
            raise BackupError(
                f"the backup root {root} overlaps the root of dataset {dataset.name} ({dataset.s3root}), "
                "which its agents and publishers can read; set DMSUPDATE_BACKUP_ROOT elsewhere"
            )
    return [(root, conf.get("BACKUP_ENDPOINT") or None)]


def backup_key(now: datetime | None = None) -> str:
    """`backups/registry-2026-11-21T01-02-03-123456Z.jsonl.gz` (sorts in time order)."""
    now = now or timezone.now()
    return f"{BACKUP_PREFIX}registry-{now:%Y-%m-%dT%H-%M-%S-%f}Z.jsonl.gz"


def backup_registry(actor: str = "system", job: Job | None = None) -> dict[str, Any]:
    """Write one backup to each backup root; audited. Returns the job result."""
    roots = backup_roots()
    key = backup_key()
    with tempfile.TemporaryDirectory(prefix="dmsupdate-backup-") as scratch:
        path = Path(scratch) / "registry.jsonl.gz"
        with path.open("wb") as f:
            counts = write_backup(f)
        size = path.stat().st_size
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        sig = signature(key, digest, head())
        written, failed = [], {}
        for n, (root, endpoint) in enumerate(roots):
            if job:
                progress(job, int(100 * n / len(roots)), f"uploading to {root}")
            try:
                store = open_store(root, endpoint)
                with path.open("rb") as body:
                    store.put_new(key, body, size)
                store.put_new(key + SIGNATURE_SUFFIX, io.BytesIO(sig), len(sig))
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
