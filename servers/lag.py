"""Replay lag (DESIGN §6): how many published updates each server still has to apply, how late it is, its state.

Read by the fleet page, the server list API, /metrics and every status report.
Counts take a fixed number of queries whatever the number of servers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from dmsupdate.state.keys import NANOS
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from servers.models import Server, ServerState


def published_updates(dataset_id) -> QuerySet[StateObject]:
    """Published updates of a dataset: what servers must replay (indexed by object_lag_idx)."""
    return StateObject.objects.filter(
        dataset_id=dataset_id, kind=ObjectKind.UPDATE, state=ObjectState.PUBLISHED
    )


def _newest(kind: str) -> QuerySet[StateObject]:
    return StateObject.objects.filter(
        dataset_id=OuterRef("pk"), kind=kind, state=ObjectState.PUBLISHED, effective_ns__isnull=False
    ).order_by("-effective_ns", "-key")


def datasets_with_heads() -> QuerySet[Dataset]:
    """Datasets annotated with their newest published update (`head_key`, `head_ns`) and image (`image_ns`).

    A correlated subquery per dataset walks object_lag_idx backwards and stops at
    the first row, where GROUP BY + MAX over the registry would read every update.
    """
    updates, images = _newest(ObjectKind.UPDATE), _newest(ObjectKind.IMAGE)
    return Dataset.objects.annotate(
        head_key=Subquery(updates.values("key")[:1]),
        head_ns=Subquery(updates.values("effective_ns")[:1]),
        image_ns=Subquery(images.values("effective_ns")[:1]),
    ).order_by("name")


@dataclass(frozen=True)
class Heads:
    """What a dataset offers its servers: the newest published update and image times (ns)."""

    update_ns: int | None
    image_ns: int | None


def dataset_heads(dataset_ids: Iterable[int]) -> dict[int, Heads]:
    """The Heads of each dataset, in one query."""
    rows = datasets_with_heads().filter(pk__in=list(dataset_ids)).values_list("pk", "head_ns", "image_ns")
    return {pk: Heads(head_ns, image_ns) for pk, head_ns, image_ns in rows}


def replay_start(effective_ns: int | None, heads: Heads | None) -> int | None:
    """The time after which a server has updates to replay.

    A server that reported is at its effective time. One that never reported
    starts from the dataset's newest image (DESIGN §4: new servers bootstrap
    from it), so what it has to replay is what came after the image; with no
    image it replays every update (None).
    """
    if effective_ns is not None:
        return effective_ns
    return heads.image_ns if heads is not None else None


def missing_needed(server: Server) -> QuerySet[StateObject]:
    """Updates gone from the bucket (registry state `missing`) later than what the server applied.

    The agent cannot see an object that is not there, so it would replay past
    the gap without a word: only the registry can tell. A server that never
    reported needs none yet (it bootstraps from an image first).
    """
    if server.effective_ns is None:
        return StateObject.objects.none()
    return StateObject.objects.filter(
        dataset_id=server.dataset_id,
        kind=ObjectKind.UPDATE,
        state=ObjectState.MISSING,
        effective_ns__gt=server.effective_ns,
    ).order_by("effective_ns", "key")


# What lags_of and state_of read of a server: a named row of these (plus pk) stands in
# for a Server where building a thousand model instances would cost more than the query.
LAG_FIELDS = (
    "dataset_id",
    "enabled",
    "agent_url",
    "effective_ns",
    "last_report_at",
    "last_succeeded",
    "late_keys",
    "unreachable_since",
    "rebuild_requested_at",
    "apply_ops",
    "apply_seconds",
    "diverged_ns",
)


@dataclass(frozen=True, slots=True)
class Lag:
    """A server's replay lag as the API and the dashboard show it (DESIGN §6)."""

    pending_updates: int
    lag_seconds: float | None  # None when the server never reported an effective time
    state: str
    missing_updates: int = 0  # needed updates gone from the bucket (see missing_needed)
    # Time to apply what is pending at the server's own recent apply rate; None when unknown.
    catch_up_seconds: float | None = None


def lags_of(servers: Sequence[Any], now: datetime | None = None) -> dict[int, Lag]:
    """The Lag of each server (a Server, or a named row of its fields), by primary key.

    One query for the dataset heads and one per dataset for the counts, whatever
    the number of servers: the dataset's updates after its least advanced server
    are scanned once (object_lag_idx, index only) and bucketed by the servers'
    start times, published and missing apart, rather than counted per server.
    """
    now = now or timezone.now()
    by_dataset: dict[int, list[Any]] = defaultdict(list)
    for server in servers:
        by_dataset[server.dataset_id].append(server)
    heads = dataset_heads(by_dataset)
    stale = report_stale()
    lags: dict[int, Lag] = {}
    for dataset_id, group in by_dataset.items():
        head = heads.get(dataset_id)
        starts = {s.pk: replay_start(s.effective_ns, head) for s in group}
        thresholds = sorted({-1 if t is None else t for t in starts.values()})
        counts = _bucket_counts(dataset_id, thresholds)
        # later[state][i]: updates in `state` later than thresholds[i] (bucket b: later than b thresholds).
        later = {}
        for state in (ObjectState.PUBLISHED, ObjectState.MISSING):
            running = [0] * (len(thresholds) + 1)
            for b in range(len(thresholds), 0, -1):
                running[b - 1] = running[b] + counts.get((b, state), 0)
            later[state] = running
        position = {t: i for i, t in enumerate(thresholds)}
        for server in group:
            start = starts[server.pk]
            i = position[-1 if start is None else start]
            # A server that never reported needs no missing update yet: it bootstraps first.
            missing = later[ObjectState.MISSING][i] if server.effective_ns is not None else 0
            lags[server.pk] = lag_of(
                server, later[ObjectState.PUBLISHED][i], head.update_ns if head else None, now, missing, stale
            )
    return lags


def _bucket_counts(dataset_id: int, thresholds: list[int]) -> dict[tuple[int, str], int]:
    """Published and missing updates after thresholds[0], by (how many thresholds each is later than, state)."""
    rows = StateObject.objects.filter(
        dataset_id=dataset_id,
        kind=ObjectKind.UPDATE,
        state__in=[ObjectState.PUBLISHED, ObjectState.MISSING],
        effective_ns__gt=thresholds[0],
    ).order_by()
    if connection.vendor == "postgresql":
        # width_bucket(x, bounds) = number of bounds <= x; bounds t+1 make it "thresholds < x".
        query, params = rows.values("effective_ns", "state").query.sql_with_params()
        with connection.cursor() as cur:
            cur.execute(
                f"SELECT width_bucket(u.effective_ns, %s::bigint[]), u.state, count(*)"
                f" FROM ({query}) u GROUP BY 1, 2",
                [[t + 1 for t in thresholds], *params],
            )
            return {(bucket, state): n for bucket, state, n in cur.fetchall()}
    return Counter(
        (bisect_left(thresholds, x), state)
        for x, state in rows.values_list("effective_ns", "state").iterator()
    )


def lag_of(
    server: Any,
    pending: int,
    head_ns: int | None,
    now: datetime | None = None,
    missing: int = 0,
    stale: timedelta | None = None,
) -> Lag:
    """Combine a server's report with the dataset head into its lag and state (`stale`: see state_of)."""
    now = now or timezone.now()
    state = state_of(server, pending, now, missing, stale)
    return Lag(pending, lag_seconds(head_ns, server.effective_ns), state, missing, catch_up(server, pending))


def lag_seconds(head_ns: int | None, effective_ns: int | None) -> float | None:
    """`lag_seconds`: how far the server's effective time is behind the head (None: it never reported one)."""
    if head_ns is None:
        return 0.0
    if effective_ns is None:
        return None
    return max(0.0, (head_ns - effective_ns) / NANOS)


def catch_up(server: Any, pending: int) -> float | None:
    """`catch_up_seconds` (DESIGN §6): pending updates at the server's recent apply rate (Server.apply_ops)."""
    if pending == 0:
        return 0.0
    if not server.apply_ops or server.apply_seconds <= 0:
        return None
    return pending * server.apply_seconds / server.apply_ops


def rebuild_pending(server: Any) -> bool:
    """True while an admin's rebuild has not been reported done.

    A pushed rebuild ends with the agent's next report; a pull agent (no agent URL)
    learns of the request from the answer to its report, so it stays pending until
    the agent reports a run that was a rebuild.
    """
    if not server.rebuild_requested_at:
        return False
    if not server.agent_url:
        return True
    return server.last_report_at is None or server.last_report_at < server.rebuild_requested_at


def report_stale() -> timedelta:
    """How long a server with an agent URL may go without reporting before it reads unreachable."""
    return timedelta(seconds=settings.DMSUPDATE["REPORT_STALE_SECONDS"])


def state_of(
    server: Any, pending: int, now: datetime, missing: int = 0, stale: timedelta | None = None
) -> str:
    """One definition of the state badge, in order of what needs the admin most.

    `stale` is report_stale(), passed in by callers that judge thousands of servers at once.
    """
    if not server.enabled:
        return ServerState.DISABLED
    if rebuild_pending(server):
        return ServerState.REBUILDING
    stale = stale or report_stale()
    if server.unreachable_since or (
        server.agent_url and server.last_report_at and now - server.last_report_at > stale
    ):
        return ServerState.UNREACHABLE
    # Late keys outside the window and needed updates missing from the bucket never
    # resolve by waiting: both need an admin (restore the objects, or rebuild).
    if server.last_succeeded is False or server.late_keys or missing:
        return ServerState.FAILING
    # Its data differs from the other servers' (or the image's) at the same effective time.
    if server.diverged_ns is not None:
        return ServerState.DIVERGED
    if server.last_report_at is None or pending > 0:
        return ServerState.BEHIND
    return ServerState.OK


def lag_for(server: Server) -> Lag:
    """The lag of one server (two queries: the dataset heads and its counts)."""
    return lags_of([server])[server.pk]
