"""Restore of a registry backup (operations.backup) into an empty database, or a dataset from its bucket alone.

Restore reads a backup file back into an empty database in one transaction
(a truncated or foreign file changes nothing), keeping every id and audit hash
so `verify_chain` still passes, then reconciles each dataset with its bucket.
Without any backup, `rebuild_from_bucket` registers a dataset from its root alone.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from django.core.management.color import no_style
from django.db import connection, models, transaction

from audit.services import Anchor, record
from dmsupdate.state.keys import BACKUPS_PREFIX as BACKUP_PREFIX
from dmsupdate.state.stores import ObjectNotFound, ObjectStore, StoreError, open_store
from jobs.schedules import ensure_schedules as ensure_job_schedules
from operations.backup import BATCH, FORMAT, MODELS, SIGNATURE_SUFFIX, VERSION, BackupError, model_of
from operations.schedules import ensure_schedules as ensure_backup_schedule
from operations.sealing import SECRET_FIELDS, SealError, anchor_of, check_signature, unseal
from publications.models import Dataset
from publications.schedules import ensure_schedules
from publications.sync import sync_dataset


def _signature(store: ObjectStore, key: str) -> dict:
    """The checked signature of the backup `key` (BackupError when it is missing or not ours)."""
    try:
        with store.open(key + SIGNATURE_SUFFIX) as f:
            raw = f.read(1 << 16)
    except ObjectNotFound as exc:
        raise BackupError(
            f"{store.url(key)} has no signature ({key}{SIGNATURE_SUFFIX}); not restored"
        ) from exc
    except StoreError as exc:
        raise BackupError(f"cannot read the signature of {store.url(key)}: {exc}") from exc
    try:
        return check_signature(raw, key)
    except SealError as exc:
        raise BackupError(f"{exc}; not restored") from exc


def locate_backup(
    root: str, endpoint: str | None = None, key: str | None = None
) -> tuple[ObjectStore, str, dict]:
    """The store, key and checked signature of the backup to restore: `key`, or the newest one signed by us.

    Unsigned or foreign files (a `registry-2099-…` planted in the root) are passed over.
    """
    store = open_store(root, endpoint)
    if key:
        try:
            store.head(key)
        except ObjectNotFound as exc:
            raise BackupError(f"no backup {key!r} under {root}") from exc
        return store, key, _signature(store, key)
    try:
        keys = sorted(info.key for info in store.list(BACKUP_PREFIX) if info.key.endswith(".jsonl.gz"))
    except StoreError:
        keys = []  # a backup root never written to: no backup, said below
    refused = []
    for candidate in reversed(keys):
        try:
            return store, candidate, _signature(store, candidate)
        except BackupError as exc:
            refused.append(str(exc))
    if refused:
        raise BackupError("no backup signed by this deployment: " + "; ".join(refused[:5]))
    raise BackupError(
        f"no backup under {store.url(BACKUP_PREFIX)}; use --rebuild-from-bucket to register the bucket's objects"
    )


def newest_anchor(root: str, endpoint: str | None = None) -> Anchor | None:
    """The audit chain's head recorded with the newest signed backup (verify_audit checks the log against it)."""
    try:
        _, _, sig = locate_backup(root, endpoint)
    except (BackupError, StoreError):
        return None
    return anchor_of(sig)


def split_backup_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix/backups/x.jsonl.gz` → (`s3://bucket/prefix`, `backups/x.jsonl.gz`)."""
    root, sep, rest = url.rpartition("/" + BACKUP_PREFIX)
    if not sep or not root:
        raise BackupError(f"{url!r} is not a backup URL (…/backups/NAME.jsonl.gz)")
    return root, BACKUP_PREFIX + rest


def occupied_tables() -> list[str]:
    """The models that already hold rows (restore refuses a database that is not empty)."""
    return [label for label in MODELS if model_of(label)._default_manager.exists()]


def _decode(model: type[models.Model], fields: dict) -> tuple[dict, dict]:
    """JSON fields back to model attributes, and the many-to-many ids to set afterwards."""
    values, m2m = {}, {}
    sealed = SECRET_FIELDS.get(model._meta.label_lower, ())
    by_attname = {f.attname: f for f in model._meta.concrete_fields}
    m2m_names = {f.name for f in model._meta.many_to_many}
    for name, value in fields.items():
        if name in m2m_names:
            m2m[name] = value
            continue
        f = by_attname.get(name)
        if f is None:
            raise BackupError(f"{model._meta.label}: unknown field {name!r} (backup from another version?)")
        if name in sealed:
            try:
                value = unseal(value)
            except SealError as exc:
                raise BackupError(f"{model._meta.label}: {exc}") from exc
        elif value is not None and isinstance(f, models.DateTimeField):
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
            model_of(label)._default_manager.bulk_create([obj for obj, _ in batch])
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
            model = model_of(label)
            values, m2m = _decode(model, item.get("fields") or {})
            pending.setdefault(label, []).append((model(**values), m2m))
            counts[label] = counts.get(label, 0) + 1
            if len(pending[label]) >= BATCH:
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
        for f in model_of(label)._meta.concrete_fields
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
    statements = connection.ops.sequence_reset_sql(no_style(), [model_of(label) for label in MODELS])
    if statements:
        with connection.cursor() as cur:
            for sql in statements:
                cur.execute(sql)


def _reconcile(datasets) -> dict[str, str]:
    """Full sync_state of each restored dataset: objects published or removed since the backup."""
    synced = {}
    for dataset in datasets:
        try:
            synced[dataset.name] = sync_dataset(dataset, full=True).summary
        except Exception as exc:  # noqa: BLE001 - one unreachable bucket must not undo the restore
            synced[dataset.name] = f"sync failed: {exc}"
    return synced


def restore_registry(
    root: str, endpoint: str | None = None, key: str | None = None, actor: str = "system", sync: bool = True
) -> RestoreResult:
    """Restore a backup into an empty database, then reconcile each dataset with its bucket; audited."""
    busy = occupied_tables()
    if busy:
        raise BackupError(
            f"the database is not empty ({', '.join(busy)} hold rows); restore needs an empty one"
        )
    store, key, sig = locate_backup(root, endpoint, key)
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
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if digest != sig["sha256"]:
            raise BackupError(f"{store.url(key)} is not the file its signature covers; not restored")
        with path.open("rb") as f:
            counts = load_backup(f)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = RestoreResult(key=store.url(key), counts=counts)
    # Restored datasets get their periodic schedules (bulk inserts send no save signals).
    ensure_schedules()
    ensure_job_schedules()
    ensure_backup_schedule()
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
