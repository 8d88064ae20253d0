"""Reconcile the object registry with a dataset's state root (`sync_state`).

Every key under the root becomes a StateObject row: parsed when it follows the
layout, recorded `invalid` with the parser's message when it does not. Runs are
incremental: `updates/` is listed after `Dataset.sync_cursor` and `images/`
after the newest registered image, so a run costs one ListObjectsV2 call per
1,000 *new* keys whatever the bucket's history. A full run lists everything,
marks keys gone from the root `missing` and brings back missing keys that
reappear; the scheduler runs one a day, and it is what finds late arrivals
written below the cursor and stray keys outside `images/` and `updates/`.

Each listed batch of BATCH keys is compared with the registry rows of its key
range, read by one range scan of the (dataset, key) index, which holds keys in
the listing's byte order: only new, changed, returning and vanished keys are
written. Each batch is written in one transaction together with the cursor it
covers, so memory is bounded by the batch size and a crash never skips a key
(the next run lists again from the last committed cursor). Two runs on one
dataset never overlap (a PostgreSQL advisory lock).
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

from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from dmsupdate.state.keys import BACKUPS_PREFIX, InvalidKey, nanos_to_datetime, parse_key, parse_key_parts
from dmsupdate.state.stores import ObjectInfo, StoreError
from publications.models import Dataset, ObjectKind, ObjectState, StateObject

log = logging.getLogger(__name__)

BATCH = 1000
# Registry rows read per query when comparing a batch with its key range.
PAGE = 2 * BATCH
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
                    _apply(dataset, listing, result, on_batch, move_cursor=True, complete=True)
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


@dataclass
class _Changes:
    """What one listed batch changes in the registry; `_write_batch` writes it in one transaction."""

    listed: int = 0
    fresh: list[tuple] = field(default_factory=list)  # new rows, as tuples of `_FRESH_COLUMNS`
    changed: list[tuple[int, int, str]] = field(default_factory=list)  # (id, size, etag)
    restored: list[int] = field(default_factory=list)  # ids of missing rows listed again
    # The sync cursor once the batch is written (None: not moved by this listing).
    cursor: str | None = None
    # Full runs: (after, upto, listed keys): the rows with keys in (after, upto] (upto None:
    # unbounded) that were not listed are gone. Only set when the comparison found some.
    gone: tuple[str, str | None, list[str]] | None = None


def _apply(
    dataset: Dataset,
    listing: Iterable[ObjectInfo],
    result: SyncResult,
    on_batch: Callable[[SyncResult], None] | None,
    move_cursor: bool = False,
    complete: bool = False,
) -> None:
    """Register a listing's keys, batch by batch, each batch compared with the registry rows of its key range.

    `complete`: the listing is the whole root (a full run), so the ranges are
    contiguous, from the first key to the last and beyond, and rows in them
    that the listing skipped are gone.
    """
    cursor = dataset.sync_cursor
    after = ""  # complete listings: the key range compared so far ends here
    with _batch_writer(dataset, result, on_batch) as write:
        for batch in _prefetched(listing):
            changes = _compare(dataset, batch, after if complete else None)
            if move_cursor:
                cursor = _cursor_after(cursor, batch)
                changes.cursor = cursor
            write(changes)
            after = batch[-1].key
        if complete:
            write(_Changes(gone=(after, None, [])))


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


def _compare(dataset: Dataset, batch: list[ObjectInfo], after: str | None) -> _Changes:
    """What the batch changes: new keys (parsed into rows), other sizes or ETags, keys back, keys gone.

    The registry rows come from one range scan of the (dataset, key) index,
    which holds keys in the listing's byte order: [first, last] of the batch,
    or (after, last] for a complete listing, so that rows between two batches
    are compared too.
    """
    unseen = {info.key: info for info in batch}
    changes = _Changes(listed=len(batch))
    gone = False
    for pk, key, size, etag, state in _registry_rows(dataset, after, batch[0].key, batch[-1].key):
        info = unseen.pop(key, None)
        if info is None:
            gone = gone or (after is not None and state not in _NOT_GONE)
            continue
        listed_etag = info.etag or ""
        if size != info.size or (listed_etag and etag != listed_etag):
            changes.changed.append((pk, info.size, listed_etag))
        if state == ObjectState.MISSING:
            changes.restored.append(pk)
    if gone and after is not None:
        changes.gone = (after, batch[-1].key, [info.key for info in batch])
    changes.fresh = [_new_row(info) for info in unseen.values()]
    return changes


# States a row keeps when its key is not listed: already gone, or deleted by GC.
_NOT_GONE = (ObjectState.DELETED, ObjectState.MISSING)


def _registry_rows(dataset: Dataset, after: str | None, first: str, last: str) -> Iterator[tuple]:
    """Rows (id, key, size, etag, state) with keys in (after, last], or [first, last] without `after`.

    Read PAGE rows per query, in key order, so memory stays bounded even when
    a batch's range holds many more rows than the batch (keys that vanished).
    """
    low, op = (after, ">") if after is not None else (first, ">=")
    with connection.cursor() as cur:
        while True:
            cur.execute(
                f"SELECT id, key, size, etag, state FROM {_TABLE} WHERE dataset_id = %s"
                f" AND key {op} %s AND key <= %s ORDER BY key LIMIT %s",
                [dataset.pk, low, last, PAGE],
            )
            rows = cur.fetchall()
            yield from rows
            if len(rows) < PAGE:
                return
            low, op = rows[-1][1], ">"


class _PlannerStatistics:
    """ANALYZE the registry table as a sync grows it, so range scans keep using the (dataset, key) index.

    A first sync of a large root starts from an empty table: until autovacuum
    catches up, the planner believes the dataset has a handful of rows and
    answers each batch's range scan by reading all of them, which makes the run
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


@contextmanager
def _batch_writer(
    dataset: Dataset, result: SyncResult, on_batch: Callable[[SyncResult], None] | None
) -> Iterator[Callable[[_Changes], None]]:
    """A function that writes one batch's changes, each batch committed in listing order.

    On PostgreSQL the batches are written by a thread on a connection of its
    own while the next batch is listed, compared and parsed: a sync costs about
    the slower of the two sides instead of their sum. Inside a caller's
    transaction (a test, a command wrapped in one) another connection would
    not see the caller's rows, so the batches are written in line instead.
    """
    committed = dataset.sync_cursor
    previous_full_sync = dataset.last_full_sync_at

    statistics: _PlannerStatistics | None = None

    def write(changes: _Changes) -> None:
        nonlocal committed, statistics
        if statistics is None:  # on the connection that writes
            statistics = _PlannerStatistics()
        missing = _write_batch(dataset, changes, committed, result.started_at, previous_full_sync)
        statistics.inserted(len(changes.fresh))
        if changes.cursor is not None:
            committed = dataset.sync_cursor = changes.cursor
        result.listed += changes.listed
        result.new += len(changes.fresh)
        result.invalid += sum(1 for row in changes.fresh if row[_STATE] == ObjectState.INVALID)
        result.changed += len(changes.changed)
        result.restored += len(changes.restored)
        result.missing += missing
        if on_batch is not None and changes.listed:
            on_batch(result)

    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield write
        return
    writer = _WriterThread(write)
    try:
        yield writer.submit
    except BaseException:
        writer.stop()
        raise
    writer.finish()


class _WriterThread:
    """Runs `write` on each submitted batch, in order, in a thread with its own database connection.

    At most one batch waits while another is written (memory stays bounded).
    A write error stops the thread and is raised in the submitting thread.
    """

    def __init__(self, write: Callable[[_Changes], None]) -> None:
        self.write = write
        self.pending: queue.Queue = queue.Queue(maxsize=1)
        self.halt = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="sync_state-writer", daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            while True:
                try:
                    changes = self.pending.get(timeout=0.2)
                except queue.Empty:
                    if self.halt.is_set():
                        return
                    continue
                if changes is _DONE or self.halt.is_set():
                    return
                self.write(changes)
        except BaseException as exc:  # noqa: BLE001 - raised in the submitting thread
            self.failure = exc
        finally:
            connection.close()

    def submit(self, changes: _Changes | object) -> None:
        while True:
            if self.failure is not None or not self.thread.is_alive():
                self.thread.join()
                raise self.failure or SyncError("the registry writer stopped")
            try:
                self.pending.put(changes, timeout=0.2)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every submitted batch is written; raise the write error, if any."""
        self.submit(_DONE)
        self.thread.join()
        if self.failure is not None:
            raise self.failure

    def stop(self) -> None:
        """Write nothing more (the batch being written still commits) and wait for the thread."""
        self.halt.set()
        self.thread.join()


def _write_batch(
    dataset: Dataset,
    changes: _Changes,
    committed_cursor: str,
    started_at: datetime,
    previous_full_sync: datetime | None,
) -> int:
    """Write one batch's changes and its cursor in one transaction; return how many rows went missing."""
    now = timezone.now()
    try:
        return _write_changes(dataset, changes, committed_cursor, started_at, previous_full_sync, now)
    except IntegrityError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != _UNIQUE_VIOLATION:
            raise
    # A publication registered one of the new keys since the comparison read its range:
    # write the batch again, skipping the keys that exist now.
    return _write_changes(
        dataset, changes, committed_cursor, started_at, previous_full_sync, now, skip_existing=True
    )


def _write_changes(
    dataset: Dataset,
    changes: _Changes,
    committed_cursor: str,
    started_at: datetime,
    previous_full_sync: datetime | None,
    now: datetime,
    skip_existing: bool = False,
) -> int:
    missing = 0
    with transaction.atomic():
        _insert(dataset, changes.fresh, now, skip_existing)
        if changes.changed:
            StateObject.objects.bulk_update(
                [
                    StateObject(id=pk, size=size, etag=etag, last_seen=now)
                    for pk, size, etag in changes.changed
                ],
                ["size", "etag", "last_seen"],
            )
        if changes.restored:
            _restore(changes.restored, now)
        if changes.gone is not None:
            missing = _mark_gone(dataset, *changes.gone, started_at, previous_full_sync, now)
        if changes.cursor is not None and changes.cursor != committed_cursor:
            Dataset.objects.filter(pk=dataset.pk).update(sync_cursor=changes.cursor)
    return missing


_TABLE = StateObject._meta.db_table
_UNIQUE_VIOLATION = "23505"  # SQLSTATE
# The columns of a new registry row that come from its key and the listing, in the order of `_new_row`'s tuples.
_FRESH_COLUMNS = (
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
    "state",
    "error",
)
_STATE = _FRESH_COLUMNS.index("state")
# PostgreSQL types for the binary COPY of new rows (varchar columns take `text`): the
# columns `_insert` fills for the whole batch (dataset_id, sha256, first_seen, last_seen,
# state_changed_at), then `_FRESH_COLUMNS`.
_CONSTANT_TYPES = ["int8", "text", "timestamptz", "timestamptz", "timestamptz"]
_FRESH_TYPES = [
    "text",
    "text",
    "text",
    "text",
    "int8",
    "timestamptz",
    "text",
    "text",
    "int8",
    "text",
    "text",
    "text",
]


def _new_row(info: ObjectInfo) -> tuple:
    """The registry row of a key seen for the first time, as a tuple of `_FRESH_COLUMNS`."""
    etag = info.etag or ""
    try:
        kind, op, label, nanos, arg, fmt = parse_key_parts(info.key)
    except InvalidKey as exc:
        return (info.key, _OTHER, "", "", None, None, "", "", info.size, etag, _INVALID, str(exc))
    effective_at = nanos_to_datetime(nanos) if nanos is not None else None
    return (
        info.key,
        kind,
        op or "",
        label or "",
        nanos,
        effective_at,
        arg or "",
        fmt or "",
        info.size,
        etag,
        _PUBLISHED,
        "",
    )


_PUBLISHED, _INVALID, _OTHER = str(ObjectState.PUBLISHED), str(ObjectState.INVALID), str(ObjectKind.OTHER)


def _insert(dataset: Dataset, rows: list[tuple], now: datetime, skip_existing: bool = False) -> None:
    """Insert new registry rows; `skip_existing`: leave out keys that have a row already.

    On PostgreSQL the rows go straight into the table by binary COPY: an
    INSERT statement of 1,000 rows cost more in Python than listing the keys,
    and COPY through a temporary table and INSERT ... ON CONFLICT cost the
    database a third more. A key registered meanwhile makes the COPY fail
    (the unique constraint), and the caller writes the batch again with
    `skip_existing` (INSERT ... ON CONFLICT DO NOTHING). Runs inside the
    batch's transaction.
    """
    if not rows:
        return
    constant = {
        "dataset_id": dataset.pk,
        "sha256": "",
        "first_seen": now,
        "last_seen": now,
        "state_changed_at": now,
    }
    if connection.vendor != "postgresql" or skip_existing:
        objects = [StateObject(**constant, **dict(zip(_FRESH_COLUMNS, row, strict=True))) for row in rows]
        StateObject.objects.bulk_create(objects, ignore_conflicts=True)
        return
    columns = ", ".join([*constant, *_FRESH_COLUMNS])
    first = tuple(constant.values())
    # The wrapper turns psycopg's errors into Django's (IntegrityError), as for any query.
    with (
        connection.wrap_database_errors,
        connection.cursor() as cur,
        cur.cursor.copy(f"COPY {_TABLE} ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(_CONSTANT_TYPES + _FRESH_TYPES)
        for row in rows:
            copy.write_row(first + row)


def _restore(ids: list[int], now: datetime) -> None:
    """Missing keys that are back: valid ones are published again, invalid ones stay invalid."""
    rows = StateObject.objects.filter(id__in=ids, state=ObjectState.MISSING)
    rows.exclude(kind=ObjectKind.OTHER).update(
        state=ObjectState.PUBLISHED, state_changed_at=now, error="", last_seen=now
    )
    rows.filter(kind=ObjectKind.OTHER).update(state=ObjectState.INVALID, state_changed_at=now, last_seen=now)


def _mark_gone(
    dataset: Dataset,
    after: str,
    upto: str | None,
    listed: list[str],
    started_at: datetime,
    previous_full_sync: datetime | None,
    now: datetime,
) -> int:
    """Rows with keys in (after, upto] that a complete listing skipped are gone; return how many went missing.

    GC's `deleted` rows stay deleted. A never-published object that is gone (a
    publication withdrawn when the database failed) is `deleted`, not
    `missing`: no server needs it. Rows registered or seen since the run
    started are left alone. A gone row was last seen by the previous full run,
    unless something saw it later.
    """
    gone = StateObject.objects.filter(dataset=dataset, key__gt=after, last_seen__lt=started_at).exclude(
        state__in=_NOT_GONE
    )
    if upto is not None:
        gone = gone.filter(key__lte=upto)
    if listed:
        gone = gone.exclude(key__in=listed)
    seen = {"last_seen": Greatest("last_seen", Value(previous_full_sync))} if previous_full_sync else {}
    gone.filter(state=ObjectState.UNPUBLISHED).update(state=ObjectState.DELETED, state_changed_at=now, **seen)
    return gone.update(state=ObjectState.MISSING, state_changed_at=now, **seen)


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
