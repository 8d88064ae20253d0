"""A dataset's head: its newest published update and image, which agents poll instead of listing S3 (DESIGN §6).

`Dataset.head_changed_ns` moves whenever a published update or image is registered
(a publication, a recorded object, sync_state finding one, a missing one back),
in the same transaction. The ETag is made from it alone, so the answer to an
agent whose head has not moved (304) costs one read of the dataset's row.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

from dmsupdate.state.keys import iso
from publications.models import Dataset, ObjectKind, ObjectState, StateObject

_TABLE = Dataset._meta.db_table
_SERVERS = Dataset._meta.get_field("servers").related_model._meta.db_table


def bump_head(dataset_id: int) -> None:
    """Note that the dataset's head may have moved (inside the caller's transaction)."""
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {_TABLE} SET head_changed_ns = {greatest}(head_changed_ns + 1, %s) WHERE id = %s",
            [time.time_ns(), dataset_id],
        )


def publish_and_move_head(object_id: int, etag: str, when) -> None:
    """Mark a verified upload published and move its dataset's head, in one statement (a publication's hot path)."""
    if connection.vendor != "postgresql":
        StateObject.objects.filter(pk=object_id).update(
            state=ObjectState.PUBLISHED, etag=etag, state_changed_at=when
        )
        bump_head(StateObject.objects.filter(pk=object_id).values_list("dataset_id", flat=True).get())
        return
    objects = StateObject._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"WITH published AS (UPDATE {objects} SET state = %s, etag = %s, state_changed_at = %s"
            f" WHERE id = %s RETURNING dataset_id)"
            f" UPDATE {_TABLE} d SET head_changed_ns = GREATEST(d.head_changed_ns + 1, %s)"
            " FROM published WHERE d.id = published.dataset_id",
            [str(ObjectState.PUBLISHED), etag, when, object_id, time.time_ns()],
        )


def etag_of(dataset_id: int, changed_ns: int) -> str:
    return f'"{dataset_id}-{changed_ns}"'


def _newest(dataset: Dataset, kind: str) -> dict[str, Any] | None:
    # The lag index (dataset, kind, state, effective_ns) answers each with one index probe.
    row = (
        StateObject.objects.filter(dataset_id=dataset.pk, kind=kind, state=ObjectState.PUBLISHED)
        .exclude(effective_ns=None)
        .order_by("-effective_ns")
        .values("key", "effective_ns")
        .first()
    )
    if row is None:
        return None
    return {"key": row["key"], "time": iso(row["effective_ns"]), "effective_ns": row["effective_ns"]}


def head_of(dataset: Dataset) -> dict[str, Any]:
    """The answer's body: the newest published update and image (key, time), or null."""
    return {
        "dataset": dataset.name,
        "update": _newest(dataset, ObjectKind.UPDATE),
        "image": _newest(dataset, ObjectKind.IMAGE),
    }


def find_dataset(
    name: str, dataset_ids: set[int] | None, server_id: int | None, spending: tuple[str, list] | None = None
) -> tuple[bool, tuple[int, int] | None]:
    """Whether the caller's throttle share was taken, and (id, head_changed_ns) of the named dataset it may read.

    The dataset is None when there is none by that name the caller may read (an
    agent: its server's). `spending` is the throttle's statement
    (`TokenRateThrottle.spending`; None: no limit, always taken). On PostgreSQL
    both are one statement written out: this is the whole of the 304 path's own
    work, and building it through the ORM cost more CPU than running it.
    """
    postgresql = connection.vendor == "postgresql"
    sql = f"SELECT d.id, d.head_changed_ns FROM {_TABLE} d WHERE d.name = %s"
    params: list = [name]
    if dataset_ids is not None:
        sql += " AND d.id = ANY(%s)" if postgresql else " AND d.id IN (SELECT value FROM json_each(%s))"
        params.append(sorted(dataset_ids) if postgresql else json.dumps(sorted(dataset_ids)))
    if server_id is not None:
        sql += f" AND EXISTS (SELECT 1 FROM {_SERVERS} s WHERE s.id = %s AND s.dataset_id = d.id)"
        params.append(server_id)
    taken = True
    with connection.cursor() as cur:
        if spending is not None and postgresql:
            # A data-modifying CTE: the share is taken (or not) whatever the rest finds.
            spend_sql, spend_params = spending
            cur.execute(
                f"WITH spent AS ({spend_sql}), found AS ({sql})"
                " SELECT EXISTS (SELECT 1 FROM spent), (SELECT id FROM found),"
                " (SELECT head_changed_ns FROM found)",
                [*spend_params, *params],
            )
            taken, dataset_id, changed_ns = cur.fetchone()
            return taken, (dataset_id, changed_ns) if dataset_id is not None else None
        if spending is not None:
            cur.execute(*spending)
            taken = cur.fetchone() is not None
        cur.execute(sql, params)
        row = cur.fetchone()
    return taken, (row[0], row[1]) if row else None


@dataclass
class Gate:
    """How many head requests this process answers at once; beyond the bound, callers are told to come back later."""

    lock: threading.Lock
    in_flight: int = 0

    def enter(self) -> bool:
        limit = settings.DMSUPDATE.get("HEAD_MAX_IN_FLIGHT", 16)
        with self.lock:
            if self.in_flight >= limit:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


GATE = Gate(threading.Lock())
