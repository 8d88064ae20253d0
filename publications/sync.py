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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.db.models import Max
from django.utils import timezone

from dmsupdate.locks import advisory_lock
from dmsupdate.state.keys import BACKUPS_PREFIX
from dmsupdate.state.stores import ObjectInfo, StoreError
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from publications.prefetch import prefetched
from publications.reconcile import STATE, UPDATES, Changes, compare, cursor_after
from publications.registry_writer import batch_writer

log = logging.getLogger(__name__)

# Listed incrementally; anything else under the root is seen by full runs only.
IMAGES = "images/"
LOCK_NAMESPACE = 0x73796E63  # "sync": advisory-lock key space of sync_state


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
    with advisory_lock(LOCK_NAMESPACE, dataset.pk, wait=False) as held:
        if not held:
            raise SyncBusy(f"{dataset.name}: another sync of this dataset is running")
        yield


def _images_cursor(dataset: Dataset) -> str | None:
    """The newest registered dated image key: new images sort after it.

    Read from committed rows, so it can never run ahead of what is registered.
    """
    return (
        StateObject.objects.filter(dataset=dataset, kind=ObjectKind.IMAGE, key__startswith=IMAGES)
        .aggregate(k=Max("key"))
        .get("k")
    )


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

    def record(changes: Changes, missing: int) -> None:
        result.listed += changes.listed
        result.new += len(changes.fresh)
        result.invalid += sum(1 for row in changes.fresh if row[STATE] == ObjectState.INVALID)
        result.changed += len(changes.changed)
        result.restored += len(changes.restored)
        result.missing += missing
        if on_batch is not None and changes.listed:
            on_batch(result)

    with batch_writer(dataset, result.started_at, record) as write:
        for batch in prefetched(listing):
            changes = compare(dataset, batch, after if complete else None)
            if move_cursor:
                cursor = cursor_after(cursor, batch)
                changes.cursor = cursor
            write(changes)
            after = batch[-1].key
        if complete:
            write(Changes(gone=(after, None, [])))
