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
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.utils import timezone

from audit.services import record
from dmsupdate.state.keys import BACKUPS_PREFIX as BACKUP_PREFIX
from dmsupdate.state.stores import ObjectNotFound, ObjectStore, StoreError, open_store
from jobs.models import Job
from jobs.services import JobFailed, progress
from publications.models import Dataset

FORMAT = "dmsupdate-registry"
VERSION = 1
_BATCH = 1000

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


def _model(label: str) -> type[models.Model]:
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
                model = _model(label)
                # Users' groups and permissions are not part of the registry (roles live on tokens).
                m2m = [] if label == "auth.user" else list(model._meta.many_to_many)
                rows = model._default_manager.order_by("pk")
                if m2m:
                    rows = rows.prefetch_related(*(f.name for f in m2m))
                n = 0
                for obj in rows.iterator(chunk_size=_BATCH):
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


def run_backup_job(job: Job) -> dict[str, Any]:
    """Runner of `backup` jobs (scheduled daily, or on request)."""
    try:
        return backup_registry(actor=job.actor or "system", job=job)
    except BackupError as exc:
        raise JobFailed(str(exc)) from exc


# Restore ----------------------------------------------------------------------------------


def locate_backup(root: str, endpoint: str | None = None, key: str | None = None) -> tuple[ObjectStore, str]:
    """The store and key of the backup to restore: `key`, or the newest under `backups/`."""
    store = open_store(root, endpoint)
    if key:
        try:
            store.head(key)
        except ObjectNotFound as exc:
            raise BackupError(f"no backup {key!r} under {root}") from exc
        return store, key
    newest = None
    for info in store.list(BACKUP_PREFIX):
        if info.key.endswith(".jsonl.gz"):
            newest = info.key
    if newest is None:
        raise BackupError(
            f"no backup under {store.url(BACKUP_PREFIX)}; use --rebuild-from-bucket to register the bucket's objects"
        )
    return store, newest


def split_backup_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix/backups/x.jsonl.gz` → (`s3://bucket/prefix`, `backups/x.jsonl.gz`)."""
    root, sep, rest = url.rpartition("/" + BACKUP_PREFIX)
    if not sep or not root:
        raise BackupError(f"{url!r} is not a backup URL (…/backups/NAME.jsonl.gz)")
    return root, BACKUP_PREFIX + rest


def occupied_tables() -> list[str]:
    """The models that already hold rows (restore refuses a database that is not empty)."""
    return [label for label in MODELS if _model(label)._default_manager.exists()]


def _decode(model: type[models.Model], fields: dict) -> tuple[dict, dict]:
    """JSON fields back to model attributes, and the many-to-many ids to set afterwards."""
    values, m2m = {}, {}
    by_attname = {f.attname: f for f in model._meta.concrete_fields}
    m2m_names = {f.name for f in model._meta.many_to_many}
    for name, value in fields.items():
        if name in m2m_names:
            m2m[name] = value
            continue
        f = by_attname.get(name)
        if f is None:
            raise BackupError(f"{model._meta.label}: unknown field {name!r} (backup from another version?)")
        if value is not None and isinstance(f, models.DateTimeField):
            value = datetime.fromisoformat(value)
        elif value is not None and isinstance(f, models.DateField):
            value = date.fromisoformat(value)
        values[name] = value
    return values, m2m


@dataclass
class RestoreResult:
    """What a restore brought back and how the bucket reconcile went."""

    key: str
    counts: dict[str, int] = field(default_factory=dict)
    synced: dict[str, str] = field(default_factory=dict)


def _lines(stream) -> Iterator[dict]:
    text = io.TextIOWrapper(gzip.GzipFile(fileobj=stream, mode="rb"), encoding="utf-8")
    try:
        for n, line in enumerate(text, 1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise BackupError(f"line {n} is not JSON: {exc.msg}") from exc
    except (OSError, EOFError) as exc:
        raise BackupError(f"the backup is not a complete gzip file: {exc}") from exc


def load_backup(stream) -> dict[str, int]:
    """Insert every row of a backup stream, in one transaction; verify the trailer's counts."""
    counts: dict[str, int] = {}
    lines = _lines(stream)
    header = next(lines, None)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError("not a dmsupdate registry backup (no header line)")
    if header.get("version") != VERSION:
        raise BackupError(f"backup format version {header.get('version')!r} is not supported")
    pending: dict[str, list] = {}
    m2m_sets: list[tuple[models.Model, dict]] = []
    trailer = None

    def flush(label: str) -> None:
        batch = pending.pop(label, [])
        if batch:
            _model(label)._default_manager.bulk_create([obj for obj, _ in batch])
            m2m_sets.extend((obj, m2m) for obj, m2m in batch if m2m)

    with transaction.atomic(), _times_as_stored():
        current = None
        for item in lines:
            if item.get("end"):
                trailer = item
                break
            label = item.get("model")
            if label not in MODELS:
                raise BackupError(f"unexpected model {label!r} in the backup")
            if label != current and current is not None:
                flush(current)
            current = label
            model = _model(label)
            values, m2m = _decode(model, item.get("fields") or {})
            pending.setdefault(label, []).append((model(**values), m2m))
            counts[label] = counts.get(label, 0) + 1
            if len(pending[label]) >= _BATCH:
                flush(label)
        if current is not None:
            flush(current)
        if trailer is None:
            raise BackupError("the backup is truncated (no end line); nothing was restored")
        expected = {k: v for k, v in (trailer.get("counts") or {}).items() if v}
        if expected != counts:
            raise BackupError(
                f"the backup's rows {counts} differ from its own counts {expected}; nothing restored"
            )
        for obj, m2m in m2m_sets:
            for name, ids in m2m.items():
                getattr(obj, name).set(ids)
        _reset_sequences()
    return counts


@contextmanager
def _times_as_stored() -> Iterator[None]:
    """Insert `auto_now`/`auto_now_add` fields with their backed-up values, not the time of the restore."""
    fields = [
        f
        for label in MODELS
        for f in _model(label)._meta.concrete_fields
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    saved = [(f, f.auto_now, f.auto_now_add) for f in fields]
    for f in fields:
        f.auto_now = f.auto_now_add = False
    try:
        yield
    finally:
        for f, now, now_add in saved:
            f.auto_now, f.auto_now_add = now, now_add


def _reset_sequences() -> None:
    """Move id sequences past the restored ids so new rows do not collide with them."""
    statements = connection.ops.sequence_reset_sql(no_style(), [_model(label) for label in MODELS])
    if statements:
        with connection.cursor() as cur:
            for sql in statements:
                cur.execute(sql)


def _reconcile(datasets) -> dict[str, str]:
    """Full sync_state of each restored dataset: objects published or removed since the backup."""
    from publications.sync import sync_dataset

    synced = {}
    for dataset in datasets:
        try:
            synced[dataset.name] = sync_dataset(dataset, full=True).summary
        except Exception as exc:  # noqa: BLE001 - one unreachable bucket must not undo the restore
            synced[dataset.name] = f"sync failed: {exc}"
    return synced


def _ensure_schedules() -> None:
    """Restored datasets get their periodic schedules (bulk inserts send no save signals)."""
    try:
        from publications.schedules import ensure_schedules
    except ImportError:
        return
    ensure_schedules()


def restore_registry(
    root: str, endpoint: str | None = None, key: str | None = None, actor: str = "system", sync: bool = True
) -> RestoreResult:
    """Restore a backup into an empty database, then reconcile each dataset with its bucket; audited."""
    busy = occupied_tables()
    if busy:
        raise BackupError(
            f"the database is not empty ({', '.join(busy)} hold rows); restore needs an empty one"
        )
    store, key = locate_backup(root, endpoint, key)
    scratch = tempfile.mkdtemp(prefix="dmsupdate-restore-")
    try:
        # A local copy first: a network failure half-way must not leave a half-read transaction open.
        path = Path(scratch) / "registry.jsonl.gz"
        try:
            with store.open(key) as body, path.open("wb") as f:
                shutil.copyfileobj(body, f, 1 << 20)
        except StoreError as exc:
            raise BackupError(f"cannot read {store.url(key)}: {exc}") from exc
        with path.open("rb") as f:
            counts = load_backup(f)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = RestoreResult(key=store.url(key), counts=counts)
    _ensure_schedules()
    record(actor, "registry.restored", result.key, {"counts": counts})
    if sync:
        result.synced = _reconcile(Dataset.objects.order_by("name"))
    return result


def rebuild_from_bucket(name: str, root: str, endpoint: str | None = None, actor: str = "system") -> dict:
    """Register a dataset from its state root alone (no backup): every object under it, by a full sync."""
    if Dataset.objects.filter(name=name).exists():
        raise BackupError(
            f"dataset {name!r} already exists; rebuilding it from the bucket would duplicate it"
        )
    try:
        open_store(root, endpoint)
    except StoreError as exc:
        raise BackupError(str(exc)) from exc
    dataset = Dataset(name=name, s3root=root, s3endpoint=endpoint or "")
    try:
        dataset.full_clean()
    except Exception as exc:  # noqa: BLE001 - ValidationError: shown to the admin as it is
        raise BackupError(f"invalid dataset: {exc}") from exc
    dataset.save()
    record(actor, "registry.rebuilt_from_bucket", name, {"root": root})
    return _reconcile([dataset])
