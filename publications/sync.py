"""Reconcile the object registry with a dataset's state root (`sync_state`).

Every key under the root becomes a StateObject row: parsed when it follows the
layout, recorded `invalid` with the parser's message when it does not. Runs are
incremental: `updates/` is listed after `Dataset.sync_cursor` and `images/`
after the newest registered image, so a run costs one ListObjectsV2 call per
1,000 *new* keys whatever the bucket's history. A full run lists everything,
marks keys gone from the root `missing` and brings back missing keys that
reappear; the scheduler runs one a day, and it is what finds late arrivals
written below the cursor and stray keys outside `images/` and `updates/`.

Rows are written in batches of BATCH keys, each batch in one transaction
together with the cursor it covers, so memory is bounded by the batch size and
a crash never skips a key (the next run lists again from the last committed
cursor). Two runs on one dataset never overlap (a PostgreSQL advisory lock).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import islice

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from dmsupdate.state.keys import BACKUPS_PREFIX, InvalidKey, parse_key
from dmsupdate.state.stores import ObjectInfo, StoreError
from publications.models import Dataset, ObjectKind, ObjectState, StateObject

log = logging.getLogger(__name__)

BATCH = 1000
# Batches listed ahead of the one being written (bounded: memory does not grow with the bucket).
PREFETCH = 2
# Listed incrementally; anything else under the root is seen by full runs only.
IMAGES = "images/"
UPDATES = "updates/"
_LOCK_NAMESPACE = 0x73796E63  # "sync": advisory-lock key space of sync_state


class SyncError(Exception):
    """The state root could not be reconciled; the message is one line for the admin."""


class SyncBusy(SyncError):
    """Another sync of the same dataset is running."""


@dataclass
class SyncResult:
    """What one sync run saw and changed (the job result and the command's summary)."""

    dataset: str
    full: bool
    listed: int = 0
    new: int = 0
    invalid: int = 0
    changed: int = 0
    missing: int = 0
    restored: int = 0
    list_calls: int = 0
    cursor: str = ""
    started_at: datetime = field(default_factory=timezone.now)

    @property
    def summary(self) -> str:
        kind = "full" if self.full else "incremental"
        text = (
            f"{self.dataset}: {kind} sync listed {self.listed} keys in {self.list_calls} list calls: "
            f"{self.new} new ({self.invalid} invalid), {self.changed} changed"
        )
        if self.full:
            text += f", {self.missing} now missing, {self.restored} back"
        return text

    def as_dict(self) -> dict:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["summary"] = self.summary
        return data


def sync_dataset(
    dataset: Dataset, full: bool = False, on_batch: Callable[[SyncResult], None] | None = None
) -> SyncResult:
    """Reconcile one dataset's registry with its state root and return what changed.

    Raises SyncError (after recording it in `dataset.last_sync_error`) when the
    root cannot be listed; batches committed before the failure stay, each with
    the cursor that covers it, so the next run resumes where this one stopped.
    """
    result = SyncResult(dataset=dataset.name, full=full)
    try:
        with _exclusive(dataset):
            # The cursor another run committed while this one waited for the lock.
            dataset.refresh_from_db(fields=["sync_cursor"])
            store = dataset.open_store()
            try:
                if full:
                    listing = (o for o in store.list("") if not o.key.startswith(BACKUPS_PREFIX))
                    _apply(dataset, listing, result, on_batch, move_cursor=True)
                    _mark_missing(dataset, result)
                else:
                    _apply(dataset, store.list(IMAGES, _images_cursor(dataset)), result, on_batch)
                    start = dataset.sync_cursor if dataset.sync_cursor.startswith(UPDATES) else None
                    _apply(dataset, store.list(UPDATES, start), result, on_batch, move_cursor=True)
            finally:
                result.list_calls = store.stats.list_calls
    except SyncBusy:
        raise
    except (StoreError, ValueError) as exc:
        # ValueError: boto3 refuses a malformed endpoint URL before any request.
        message = f"{dataset.s3root}: {exc}"
        _record_error(dataset, message)
        raise SyncError(message) from exc
    now = timezone.now()
    fields = {"last_sync_at": now, "last_sync_error": ""}
    if full:
        fields["last_full_sync_at"] = now
    Dataset.objects.filter(pk=dataset.pk).update(**fields)
    for name, value in fields.items():
        setattr(dataset, name, value)
    result.cursor = dataset.sync_cursor
    log.info("sync_state %s", result.summary)
    return result


def _record_error(dataset: Dataset, message: str) -> None:
    Dataset.objects.filter(pk=dataset.pk).update(last_sync_error=message[:5000])
    dataset.last_sync_error = message
    log.warning("sync_state %s failed: %s", dataset.name, message)


@contextmanager
def _exclusive(dataset: Dataset) -> Iterator[None]:
    """Hold a session advisory lock for the dataset, or raise SyncBusy (PostgreSQL only)."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, dataset.pk])
        (locked,) = cur.fetchone()
    if not locked:
        raise SyncBusy(f"{dataset.name}: another sync of this dataset is running")
    try:
        yield
    finally:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, dataset.pk])


def _images_cursor(dataset: Dataset) -> str | None:
    """The newest registered dated image key: new images sort after it.

    Read from committed rows, so it can never run ahead of what is registered.
    """
    return (
        StateObject.objects.filter(dataset=dataset, kind=ObjectKind.IMAGE, key__startswith=IMAGES)
        .aggregate(k=Max("key"))
        .get("k")
    )


def _batches(listing: Iterable[ObjectInfo]) -> Iterator[list[ObjectInfo]]:
    it = iter(listing)
    while batch := list(islice(it, BATCH)):
        yield batch


_DONE = object()


def _prefetched(listing: Iterable[ObjectInfo]) -> Iterator[list[ObjectInfo]]:
    """Batches of the listing; a thread lists the next PREFETCH batches while this one is written.

    Listing waits on the store and writing waits on the database: overlapped,
    a sync takes about as long as the slower of the two instead of their sum.
    Memory stays bounded by the queue. A listing error is raised here.
    """
    ready: queue.Queue = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in _batches(listing):
                if not offer(batch):
                    return
            offer(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            offer(exc)

    worker = threading.Thread(target=produce, name="sync_state-listing", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


class _PlannerStatistics:
    """ANALYZE the registry table as a sync grows it, so key lookups keep using the (dataset, key) index.

    A first sync of a large root starts from an empty table: until autovacuum
    catches up, the planner believes the dataset has a handful of rows and
    answers each batch's lookup by reading all of them, which makes the run
    quadratic. Analyzing each time the table has doubled costs a few
    ANALYZE runs per million keys.
    """

    def __init__(self) -> None:
        self.enabled = connection.vendor == "postgresql"
        self.pending = 0
        self.rows = 0
        if self.enabled:
            with connection.cursor() as cur:
                cur.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [self.table])
                row = cur.fetchone()
            self.rows = max(0, int(row[0])) if row else 0

    @property
    def table(self) -> str:
        return StateObject._meta.db_table

    def inserted(self, count: int) -> None:
        """Note `count` committed new rows; analyze when the table has grown by what it held."""
        if not self.enabled:
            return
        self.pending += count
        if self.pending >= max(5 * BATCH, self.rows):
            with connection.cursor() as cur:
                cur.execute(f"ANALYZE {self.table}")
            self.rows += self.pending
            self.pending = 0


def _apply(
    dataset: Dataset,
    listing: Iterable[ObjectInfo],
    result: SyncResult,
    on_batch: Callable[[SyncResult], None] | None,
    move_cursor: bool = False,
) -> None:
    statistics = _PlannerStatistics()
    for batch in _prefetched(listing):
        new_before = result.new
        with transaction.atomic():
            _write_batch(dataset, batch, result)
            if move_cursor:
                cursor = _cursor_after(dataset.sync_cursor, batch)
                if cursor != dataset.sync_cursor:
                    Dataset.objects.filter(pk=dataset.pk).update(sync_cursor=cursor)
                    dataset.sync_cursor = cursor
        result.listed += len(batch)
        statistics.inserted(result.new - new_before)
        if on_batch is not None:
            on_batch(result)


def _cursor_after(cursor: str, batch: list[ObjectInfo]) -> str:
    """The greatest valid update key of the batch, if it is beyond `cursor`.

    Only well-formed update keys move the cursor: a stray `updates/notes.txt`
    sorts after every dated key and would otherwise hide all later updates.
    """
    for info in reversed(batch):
        if not info.key.startswith(UPDATES) or info.key <= cursor:
            continue
        try:
            parsed = parse_key(info.key)
        except InvalidKey:
            continue
        if parsed.kind == ObjectKind.UPDATE:
            return info.key
    return cursor


def _write_batch(dataset: Dataset, batch: list[ObjectInfo], result: SyncResult) -> None:
    now = timezone.now()
    known = _known_rows(dataset, [info.key for info in batch])
    fresh: list[tuple] = []
    changed: list[StateObject] = []
    restored: list[int] = []
    for info in batch:
        row = known.get(info.key)
        if row is None:
            fresh.append(_new_row(dataset, info, now))
            continue
        etag = info.etag or ""
        if row["size"] != info.size or (etag and row["etag"] != etag):
            changed.append(StateObject(id=row["id"], size=info.size, etag=etag))
        if row["state"] == ObjectState.MISSING:
            restored.append(row["id"])
    _insert(fresh)
    result.new += len(fresh)
    result.invalid += sum(1 for row in fresh if row[_STATE] == ObjectState.INVALID)
    if changed:
        StateObject.objects.bulk_update(changed, ["size", "etag"])
        result.changed += len(changed)
    if restored:
        _restore(restored, now)
        result.restored += len(restored)
    # Full runs find missing keys by this timestamp: whatever the run did not touch is gone.
    if known:
        StateObject.objects.filter(id__in=[row["id"] for row in known.values()]).order_by().update(
            last_seen=now
        )


def _known_rows(dataset: Dataset, keys: list[str]) -> dict[str, dict]:
    """The registry rows of these keys (id, key, size, etag, state), by key."""
    if connection.vendor != "postgresql":
        rows = StateObject.objects.filter(dataset=dataset, key__in=keys).order_by()
        return {row["key"]: row for row in rows.values("id", "key", "size", "etag", "state")}
    # One probe of the (dataset, key) unique index per key, whatever the batch size
    # (`key IN (...)` of 1,000 keys was planned as a scan of the dataset's rows).
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT o.id, k.key, o.size, o.etag, o.state FROM unnest(%s::text[]) AS k(key)"
            f" CROSS JOIN LATERAL (SELECT id, size, etag, state FROM {StateObject._meta.db_table}"
            f" WHERE dataset_id = %s AND key = k.key LIMIT 1) AS o",
            [keys, dataset.pk],
        )
        rows = cur.fetchall()
        return {
            key: {"id": pk, "key": key, "size": size, "etag": etag, "state": state}
            for pk, key, size, etag, state in rows
        }


# The columns a new registry row is written with, in the order of `_new_row`'s tuples.
_COLUMNS = (
    "dataset_id",
    "key",
    "kind",
    "op",
    "label",
    "effective_ns",
    "effective_at",
    "arg",
    "format",
    "size",
    "etag",
    "sha256",
    "state",
    "error",
    "first_seen",
    "last_seen",
    "state_changed_at",
)
_STATE = _COLUMNS.index("state")


def _new_row(dataset: Dataset, info: ObjectInfo, now: datetime) -> tuple:
    """The registry row of a key seen for the first time, as a tuple of `_COLUMNS`."""
    try:
        fields = StateObject.fields_from_key(parse_key(info.key))
        state, error = ObjectState.PUBLISHED, ""
    except InvalidKey as exc:
        fields = {"kind": ObjectKind.OTHER}
        state, error = ObjectState.INVALID, str(exc)
    return (
        dataset.pk,
        info.key,
        fields["kind"],
        fields.get("op", ""),
        fields.get("label", ""),
        fields.get("effective_ns"),
        fields.get("effective_at"),
        fields.get("arg", ""),
        fields.get("format", ""),
        info.size,
        info.etag or "",
        "",
        state,
        error,
        now,
        now,
        now,
    )


def _insert(rows: list[tuple]) -> None:
    """Insert new registry rows, skipping keys a publication registered since they were read.

    On PostgreSQL the rows go through COPY into a temporary table and one
    INSERT ... ON CONFLICT DO NOTHING: building a 1,000-row INSERT statement
    in Python cost more than listing the keys. Runs inside the batch's transaction.
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        objects = [StateObject(**dict(zip(_COLUMNS, row, strict=True))) for row in rows]
        StateObject.objects.bulk_create(objects, ignore_conflicts=True)
        return
    table = StateObject._meta.db_table
    columns = ", ".join(_COLUMNS)
    with connection.cursor() as cur:
        # Created once per database session, emptied before each use: a caller's
        # enclosing transaction (a test, a management command) may span many batches.
        cur.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS sync_new_objects ON COMMIT DELETE ROWS"
            f" AS SELECT {columns} FROM {table} WITH NO DATA"
        )
        cur.execute("TRUNCATE sync_new_objects")
        with cur.cursor.copy(f"COPY sync_new_objects ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM sync_new_objects ON CONFLICT DO NOTHING"
        )


def _restore(ids: list[int], now: datetime) -> None:
    """Missing keys that are back: valid ones are published again, invalid ones stay invalid."""
    rows = StateObject.objects.filter(id__in=ids, state=ObjectState.MISSING)
    rows.exclude(kind=ObjectKind.OTHER).update(state=ObjectState.PUBLISHED, state_changed_at=now, error="")
    rows.filter(kind=ObjectKind.OTHER).update(state=ObjectState.INVALID, state_changed_at=now)


def _mark_missing(dataset: Dataset, result: SyncResult) -> None:
    """After a complete listing: rows it did not see are gone (GC's `deleted` rows stay deleted).

    A never-published object that is gone (a publication withdrawn when the
    database failed) is `deleted`, not `missing`: no server needs it.
    """
    gone = StateObject.objects.filter(dataset=dataset, last_seen__lt=result.started_at).exclude(
        state__in=[ObjectState.DELETED, ObjectState.MISSING]
    )
    now = timezone.now()
    gone.filter(state=ObjectState.UNPUBLISHED).update(state=ObjectState.DELETED, state_changed_at=now)
    result.missing = gone.update(state=ObjectState.MISSING, state_changed_at=now)


def run_sync_job(job) -> dict:
    """Job runner (jobs.services.RUNNERS): sync the job's dataset, reporting progress per batch."""
    from jobs.services import JobFailed, progress

    if job.dataset is None:
        raise JobFailed("a sync_state job needs a dataset")
    full = bool(job.params.get("full"))

    def report(result: SyncResult) -> None:
        # The total is unknown until the listing ends: show keys seen, creep towards 99 %.
        progress(job, min(99, result.listed // BATCH + 1), f"{result.listed} keys listed")

    try:
        result = sync_dataset(job.dataset, full=full, on_batch=report)
    except SyncError as exc:
        raise JobFailed(str(exc)) from exc
    return result.as_dict()
