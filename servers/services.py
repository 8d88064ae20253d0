"""Replay lag and status reports: how far behind each server is, and why."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, IntegerField, Max, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from dmsupdate.state.keys import NANOS, EffectiveTime, InvalidKey
from publications.models import ObjectKind, ObjectState, StateObject
from servers.models import Server, ServerState, StatusReport


def published_updates(dataset_id) -> QuerySet[StateObject]:
    """Published updates of a dataset: what servers must replay (indexed by object_lag_idx)."""
    return StateObject.objects.filter(
        dataset_id=dataset_id, kind=ObjectKind.UPDATE, state=ObjectState.PUBLISHED
    )


def dataset_heads(dataset_ids=None) -> dict[int, int | None]:
    """Newest published update time (ns) per dataset, in one query."""
    rows = StateObject.objects.filter(kind=ObjectKind.UPDATE, state=ObjectState.PUBLISHED)
    if dataset_ids is not None:
        rows = rows.filter(dataset_id__in=list(dataset_ids))
    return dict(
        rows.values("dataset_id").annotate(head=Max("effective_ns")).values_list("dataset_id", "head")
    )


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


def _missing_count() -> Subquery:
    missing = (
        StateObject.objects.filter(
            dataset_id=OuterRef("dataset_id"),
            kind=ObjectKind.UPDATE,
            state=ObjectState.MISSING,
            effective_ns__gt=OuterRef("effective_ns"),  # NULL (never reported): none needed yet
        )
        .order_by()
        .values("dataset_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(missing, output_field=IntegerField()), 0)


def with_lag(servers: QuerySet[Server]) -> QuerySet[Server]:
    """Servers with their dataset and `missing_updates`, in one query; follow with `count_pending`."""
    return servers.select_related("dataset").annotate(missing_updates=_missing_count())


def count_pending(servers: Sequence[Server]) -> None:
    """Set `pending_updates` on each server: published updates later than its effective time.

    One query per dataset, whatever the number of servers: the updates after the
    least advanced server are scanned once (object_lag_idx) and bucketed by the
    servers' effective times, rather than counted again for every server. A server
    that never reported has every published update pending.
    """
    by_dataset: dict[int, list[Server]] = defaultdict(list)
    for server in servers:
        by_dataset[server.dataset_id].append(server)
    for dataset_id, group in by_dataset.items():
        # Bucket b holds the updates later than exactly b of the (sorted) thresholds.
        thresholds = sorted({-1 if s.effective_ns is None else s.effective_ns for s in group})
        buckets = _bucket_counts(dataset_id, thresholds)
        later_than = [0] * (len(thresholds) + 1)
        for b in range(len(thresholds), 0, -1):
            later_than[b - 1] = later_than[b] + buckets.get(b, 0)
        position = {t: i for i, t in enumerate(thresholds)}
        for server in group:
            server.pending_updates = later_than[
                position[-1 if server.effective_ns is None else server.effective_ns]
            ]


def _bucket_counts(dataset_id: int, thresholds: list[int]) -> dict[int, int]:
    """Published updates after thresholds[0], counted by how many thresholds each is later than."""
    rows = published_updates(dataset_id).filter(effective_ns__gt=thresholds[0]).order_by()
    if connection.vendor == "postgresql":
        # width_bucket(x, bounds) = number of bounds <= x; bounds t+1 make it "thresholds < x".
        query, params = rows.values("effective_ns").query.sql_with_params()
        with connection.cursor() as cur:
            cur.execute(
                f"SELECT width_bucket(u.effective_ns, %s::bigint[]), count(*) FROM ({query}) u GROUP BY 1",
                [[t + 1 for t in thresholds], *params],
            )
            return dict(cur.fetchall())
    return Counter(bisect_left(thresholds, x) for x in rows.values_list("effective_ns", flat=True).iterator())


@dataclass(frozen=True)
class Lag:
    """A server's replay lag as the API and the dashboard show it (DESIGN §6)."""

    pending_updates: int
    lag_seconds: float | None  # None when the server never reported an effective time
    state: str
    missing_updates: int = 0  # needed updates gone from the bucket (see missing_needed)


def lag_of(
    server: Server,
    pending: int,
    head_ns: int | None,
    now: datetime | None = None,
    missing: int | None = None,
) -> Lag:
    """Combine a server's report with the dataset head into its lag and state.

    `missing` defaults to the `missing_updates` annotation of `with_lag`.
    """
    now = now or timezone.now()
    if missing is None:
        missing = getattr(server, "missing_updates", 0) or 0
    if head_ns is None:
        lag: float | None = 0.0
    elif server.effective_ns is None:
        lag = None
    else:
        lag = max(0.0, (head_ns - server.effective_ns) / NANOS)
    return Lag(pending, lag, state_of(server, pending, now, missing), missing)


def rebuild_pending(server: Server) -> bool:
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


def state_of(server: Server, pending: int, now: datetime, missing: int = 0) -> str:
    """One definition of the state badge, in order of what needs the admin most."""
    if not server.enabled:
        return ServerState.DISABLED
    if rebuild_pending(server):
        return ServerState.REBUILDING
    stale = timedelta(seconds=settings.DMSUPDATE["REPORT_STALE_SECONDS"])
    if server.unreachable_since or (
        server.agent_url and server.last_report_at and now - server.last_report_at > stale
    ):
        return ServerState.UNREACHABLE
    # Late keys outside the window and needed updates missing from the bucket never
    # resolve by waiting: both need an admin (restore the objects, or rebuild).
    if server.last_succeeded is False or server.late_keys or missing:
        return ServerState.FAILING
    if server.last_report_at is None or pending > 0:
        return ServerState.BEHIND
    return ServerState.OK


def pending_for(server: Server) -> int:
    """Published updates later than the server's effective time (one query)."""
    rows = published_updates(server.dataset_id)
    if server.effective_ns is not None:
        rows = rows.filter(effective_ns__gt=server.effective_ns)
    return rows.count()


def lag_for(server: Server) -> Lag:
    """The lag of one server (three queries: its pending and missing counts, and the head)."""
    head = published_updates(server.dataset_id).aggregate(h=Max("effective_ns"))["h"]
    return lag_of(server, pending_for(server), head, missing=missing_needed(server).count())


class ReportError(ValueError):
    """A status report that cannot be understood; nothing was recorded."""


def parse_effective(value) -> int | None:
    """status.json's `effectiveDate` (any accepted form) as nanoseconds, or None."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ReportError("effectiveDate must be a string")
    try:
        return EffectiveTime.parse_text(value).nanos
    except InvalidKey as exc:
        raise ReportError(str(exc)) from exc


def record_report(server: Server, body: dict, reachable: bool = True) -> StatusReport:
    """Store an agent's status.json report and update the server's last-known status.

    Validates first: a malformed report raises ReportError and changes nothing.
    """
    if not isinstance(body, dict):
        raise ReportError("a status report is a JSON object (status.json)")
    effective_ns = parse_effective(body.get("effectiveDate"))
    succeeded = body.get("lastSucceeded")
    if succeeded is not None and not isinstance(succeeded, bool):
        raise ReportError("lastSucceeded must be true, false or null")
    applied = body.get("applied") or 0
    if isinstance(applied, list):
        applied = len(applied)
    if not isinstance(applied, int) or isinstance(applied, bool):
        raise ReportError("applied must be a number or a list of keys")
    late = body.get("late") or []
    if not isinstance(late, list) or not all(isinstance(k, str) for k in late):
        raise ReportError("late must be a list of keys")
    invalid = body.get("invalid") or []
    if not isinstance(invalid, list):
        raise ReportError("invalid must be a list of keys")
    failed_key = body.get("failedKey") or ""
    error = body.get("error") or ""
    if not isinstance(failed_key, str) or not isinstance(error, str):
        raise ReportError("failedKey and error must be strings")
    last_update = body.get("lastUpdate")
    last_update_at = None
    if last_update:
        from django.utils.dateparse import parse_datetime

        last_update_at = parse_datetime(str(last_update)) if isinstance(last_update, str) else None
        if last_update_at is None:
            raise ReportError("lastUpdate must be an ISO 8601 time")
    last_run = body.get("lastRun")
    if last_run not in (None, "update", "rebuild"):
        raise ReportError("lastRun must be 'update', 'rebuild' or null")
    now = timezone.now()
    with transaction.atomic():
        server = Server.objects.select_for_update().get(pk=server.pk)
        if effective_ns is not None or last_run == "rebuild" or server.effective_ns is None:
            server.effective_ns = effective_ns
        if last_run == "rebuild":
            server.rebuild_requested_at = None
        server.last_report_at = now
        server.last_succeeded = succeeded
        server.last_update_at = last_update_at
        server.failed_key = failed_key[:1024]
        server.last_error = error
        server.late_keys = late
        server.invalid_keys = invalid[:1000]
        server.unreachable_since = None
        server.unreachable_error = ""
        server.save()
        lag = lag_for(server)
        report = StatusReport.objects.create(
            server=server,
            received_at=now,
            effective_ns=effective_ns,
            succeeded=succeeded,
            reachable=reachable,
            applied=applied,
            failed_key=failed_key[:1024],
            error=error,
            pending_updates=lag.pending_updates,
            lag_seconds=lag.lag_seconds or 0,
            body=body,
        )
    return report


def mark_unreachable(server: Server, error: str) -> None:
    """Record that the control plane could not reach the agent (shown as `unreachable`)."""
    now = timezone.now()
    with transaction.atomic():
        Server.objects.filter(pk=server.pk, unreachable_since__isnull=True).update(unreachable_since=now)
        Server.objects.filter(pk=server.pk).update(unreachable_error=error[:2000])
        StatusReport.objects.create(
            server=server,
            received_at=now,
            reachable=False,
            error=error[:2000],
            effective_ns=server.effective_ns,
        )
