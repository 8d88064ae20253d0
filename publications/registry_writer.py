"""The writing side of sync_state: each batch's changes committed with its cursor, off the listing's thread.

On PostgreSQL new rows go in by binary COPY, a thread with its own connection
writes while the next batch is listed, and the table is analyzed as it grows.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Value
from django.db.models.functions import Greatest
from django.utils import timezone

from publications.head import bump_head
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from publications.prefetch import DONE
from publications.reconcile import BATCH, FRESH_COLUMNS, NOT_GONE, TABLE, Changes

_UNIQUE_VIOLATION = "23505"  # SQLSTATE
# PostgreSQL types of the binary COPY, from the model's fields (varchar columns take `text`).
_PG_TYPES = {
    "BigIntegerField": "int8",
    "BigAutoField": "int8",
    "DateTimeField": "timestamptz",
    "ForeignKey": "int8",
    "TagsField": "text[]",
}


def _copy_type(column: str) -> str:
    field = StateObject._meta.get_field(column.removesuffix("_id"))
    return _PG_TYPES.get(field.get_internal_type(), "text")


class PlannerStatistics:
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
def batch_writer(
    dataset: Dataset, started_at: datetime, record: Callable[[Changes, int], None]
) -> Iterator[Callable[[Changes], None]]:
    """A function that writes one batch's changes, each batch committed in listing order.

    After each batch is committed, `record(changes, missing)` is called (on the
    writing thread) with how many rows it marked missing. On PostgreSQL the
    batches are written by a thread on a connection of its own while the next
    batch is listed, compared and parsed: a sync costs about the slower of the
    two sides instead of their sum. Inside a caller's transaction (a test, a
    command wrapped in one) another connection would not see the caller's rows,
    so the batches are written in line instead.
    """
    committed = dataset.sync_cursor
    previous_full_sync = dataset.last_full_sync_at
    statistics: PlannerStatistics | None = None

    def write(changes: Changes) -> None:
        nonlocal committed, statistics
        if statistics is None:  # on the connection that writes
            statistics = PlannerStatistics()
        missing = write_batch(dataset, changes, committed, started_at, previous_full_sync)
        statistics.inserted(len(changes.fresh))
        if changes.cursor is not None:
            committed = dataset.sync_cursor = changes.cursor
        record(changes, missing)

    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield write
        return
    writer = WriterThread(write)
    try:
        yield writer.submit
    except BaseException:
        writer.stop()
        raise
    writer.finish()


class WriterThread:
    """Runs `write` on each submitted batch, in order, in a thread with its own database connection.

    At most one batch waits while another is written (memory stays bounded).
    A write error stops the thread and is raised in the submitting thread.
    """

    def __init__(self, write: Callable[[Any], None]) -> None:
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
                if changes is DONE or self.halt.is_set():
                    return
                self.write(changes)
        except BaseException as exc:  # noqa: BLE001 - raised in the submitting thread
            self.failure = exc
        finally:
            connection.close()

    def submit(self, changes: Changes | object) -> None:
        while True:
            if self.failure is not None or not self.thread.is_alive():
                self.thread.join()
                raise self.failure or RuntimeError("the registry writer stopped")
            try:
                self.pending.put(changes, timeout=0.2)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every submitted batch is written; raise the write error, if any."""
        self.submit(DONE)
        self.thread.join()
        if self.failure is not None:
            raise self.failure

    def stop(self) -> None:
        """Write nothing more (the batch being written still commits) and wait for the thread."""
        self.halt.set()
        self.thread.join()


def write_batch(
    dataset: Dataset,
    changes: Changes,
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
    changes: Changes,
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
        if changes.restored or any(_moves_head(row) for row in changes.fresh):
            bump_head(dataset.pk)
        if changes.gone is not None:
            missing = _mark_gone(dataset, *changes.gone, started_at, previous_full_sync, now)
        if changes.cursor is not None and changes.cursor != committed_cursor:
            Dataset.objects.filter(pk=dataset.pk).update(sync_cursor=changes.cursor)
    return missing


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
        objects = [StateObject(**constant, **dict(zip(FRESH_COLUMNS, row, strict=True))) for row in rows]
        StateObject.objects.bulk_create(objects, ignore_conflicts=True)
        return
    columns = ", ".join([*constant, *FRESH_COLUMNS])
    first = tuple(constant.values())
    # The wrapper turns psycopg's errors into Django's (IntegrityError), as for any query.
    with (
        connection.wrap_database_errors,
        connection.cursor() as cur,
        cur.cursor.copy(f"COPY {TABLE} ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types([_copy_type(column) for column in [*constant, *FRESH_COLUMNS]])
        for row in rows:
            copy.write_row(first + row)


def _moves_head(row: tuple) -> bool:
    """Whether a new row is a published update or image (one an agent would replay)."""
    return row[_STATE] == ObjectState.PUBLISHED and row[_KIND] in (ObjectKind.UPDATE, ObjectKind.IMAGE)


_STATE, _KIND = FRESH_COLUMNS.index("state"), FRESH_COLUMNS.index("kind")


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
        state__in=NOT_GONE
    )
    if upto is not None:
        gone = gone.filter(key__lte=upto)
    if listed:
        gone = gone.exclude(key__in=listed)
    seen = {"last_seen": Greatest("last_seen", Value(previous_full_sync))} if previous_full_sync else {}
    gone.filter(state=ObjectState.UNPUBLISHED).update(state=ObjectState.DELETED, state_changed_at=now, **seen)
    return gone.update(state=ObjectState.MISSING, state_changed_at=now, **seen)
