"""How sync_state compares one listed batch with the registry: new keys, changed ones, keys back, keys gone.

Pure decisions over one batch and the registry rows of its key range (read by
one range scan of the (dataset, key) index, which holds keys in the listing's
byte order). What they decide is written by publications.registry_writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import connection

from dmsupdate.state.keys import InvalidKey, nanos_to_datetime, parse_key, parse_key_parts
from dmsupdate.state.stores import ObjectInfo
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from publications.tags import date_tags

BATCH = 1000
# Registry rows read per query when comparing a batch with its key range.
PAGE = 2 * BATCH
UPDATES = "updates/"
TABLE = StateObject._meta.db_table
# The columns of a new registry row that come from its key and the listing, in the order of `new_row`'s tuples.
FRESH_COLUMNS = (
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
    "tags",
)
STATE = FRESH_COLUMNS.index("state")
# States a row keeps when its key is not listed: already gone, or deleted by GC.
NOT_GONE = (ObjectState.DELETED, ObjectState.MISSING)


@dataclass
class Changes:
    """What one listed batch changes in the registry; publications.registry_writer writes it in one transaction."""

    listed: int = 0
    fresh: list[tuple] = field(default_factory=list)  # new rows, as tuples of FRESH_COLUMNS
    changed: list[tuple[int, int, str]] = field(default_factory=list)  # (id, size, etag)
    restored: list[int] = field(default_factory=list)  # ids of missing rows listed again
    # The sync cursor once the batch is written (None: not moved by this listing).
    cursor: str | None = None
    # Full runs: (after, upto, listed keys): the rows with keys in (after, upto] (upto None:
    # unbounded) that were not listed are gone. Only set when the comparison found some.
    gone: tuple[str, str | None, list[str]] | None = None


def cursor_after(cursor: str, batch: list[ObjectInfo]) -> str:
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


def compare(dataset: Dataset, batch: list[ObjectInfo], after: str | None) -> Changes:
    """What the batch changes: new keys (parsed into rows), other sizes or ETags, keys back, keys gone.

    The registry rows come from one range scan of the (dataset, key) index,
    which holds keys in the listing's byte order: [first, last] of the batch,
    or (after, last] for a complete listing, so that rows between two batches
    are compared too.
    """
    unseen = {info.key: info for info in batch}
    changes = Changes(listed=len(batch))
    gone = False
    for pk, key, size, etag, state in registry_rows(dataset, after, batch[0].key, batch[-1].key):
        info = unseen.pop(key, None)
        if info is None:
            gone = gone or (after is not None and state not in NOT_GONE)
            continue
        listed_etag = info.etag or ""
        if size != info.size or (listed_etag and etag != listed_etag):
            changes.changed.append((pk, info.size, listed_etag))
        if state == ObjectState.MISSING:
            changes.restored.append(pk)
    if gone and after is not None:
        changes.gone = (after, batch[-1].key, [info.key for info in batch])
    changes.fresh = [new_row(info) for info in unseen.values()]
    return changes


# States a row keeps when its key is not listed: already gone, or deleted by GC.
NOT_GONE = (ObjectState.DELETED, ObjectState.MISSING)


def registry_rows(dataset: Dataset, after: str | None, first: str, last: str) -> Iterator[tuple]:
    """Rows (id, key, size, etag, state) with keys in (after, last], or [first, last] without `after`.

    Read PAGE rows per query, in key order, so memory stays bounded even when
    a batch's range holds many more rows than the batch (keys that vanished).
    """
    low, op = (after, ">") if after is not None else (first, ">=")
    with connection.cursor() as cur:
        while True:
            cur.execute(
                f"SELECT id, key, size, etag, state FROM {TABLE} WHERE dataset_id = %s"
                f" AND key {op} %s AND key <= %s ORDER BY key LIMIT %s",
                [dataset.pk, low, last, PAGE],
            )
            rows = cur.fetchall()
            yield from rows
            if len(rows) < PAGE:
                return
            low, op = rows[-1][1], ">"


def new_row(info: ObjectInfo) -> tuple:
    """The registry row of a key seen for the first time, as a tuple of FRESH_COLUMNS."""
    etag = info.etag or ""
    try:
        kind, op, label, nanos, arg, fmt = parse_key_parts(info.key)
    except InvalidKey as exc:
        return (info.key, _OTHER, "", "", None, None, "", "", info.size, etag, _INVALID, str(exc), [])
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
        date_tags(nanos),
    )


_PUBLISHED, _INVALID, _OTHER = str(ObjectState.PUBLISHED), str(ObjectState.INVALID), str(ObjectKind.OTHER)
