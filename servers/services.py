"""Workflows of data servers: status reports, triggers of updates and rebuilds, and what publications see of servers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from dmsupdate.errors import Conflict
from dmsupdate.locks import advisory_lock
from dmsupdate.rows import update_rows
from dmsupdate.state.redact import redact
from dmsupdate.state.status import AgentStatus, parse_status, stored_body
from jobs.models import Job, JobKind, JobStatus
from jobs.services import start_job
from publications.models import Dataset
from publications.replicas import Replica
from servers.fingerprints import compare_after_reports, note_fingerprint
from servers.lag import lags_of
from servers.models import LagHour, RunTrigger, Server, StatusReport
from servers.signals import server_changed


def _without_nul(value: Any) -> Any:
    """The report as stored: PostgreSQL's jsonb holds no NUL character, and an agent's error text may carry one."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


# Server fields a status report sets (besides those a rebuild's report clears).
REPORT_FIELDS = (
    "effective_ns",
    "rebuild_requested_at",
    "last_report_at",
    "last_succeeded",
    "last_update_at",
    "failed_key",
    "last_error",
    "late_keys",
    "invalid_keys",
    "ready",
    "ready_reason",
    "unreachable_since",
    "unreachable_error",
    "fingerprint",
    "fingerprint_ns",
    "diverged_ns",
    "divergence",
)


def record_report(server: Server, body: dict, reachable: bool = True) -> StatusReport:
    """Store an agent's status.json report and update the server's last-known status.

    Checks the whole report first (dmsupdate.state.status.parse_status): a
    malformed one raises InvalidStatus and changes nothing.
    """
    return record_reports([(server, body)], reachable)[0]


def record_reports(items: Sequence[tuple[Server, dict]], reachable: bool = True) -> list[StatusReport]:
    """Record several servers' reports at once (a fleet job's answers): one statement per table.

    Every report is checked first; one malformed report raises InvalidStatus and
    nothing is recorded. The servers' rows are locked (in primary-key order, so two
    batches never wait on each other crosswise) while their status, lag and hourly
    roll-up are written. Returns the StatusReports in the order of `items`.
    """
    checked = [(server.pk, parse_status(body), _without_nul(stored_body(body))) for server, body in items]
    now = timezone.now()
    with transaction.atomic():
        pks = sorted({pk for pk, _, _ in checked})
        locked = {s.pk: s for s in Server.objects.select_for_update().filter(pk__in=pks).order_by("pk")}
        for pk, status, _ in checked:
            _take_status(locked[pk], status, now)
        update_rows(list(locked.values()), REPORT_FIELDS)
        compare_after_reports([(locked[pk], status) for pk, status, _ in checked])
        lags = lags_of(list(locked.values()), now)
        reports = StatusReport.objects.bulk_create(
            StatusReport(
                server_id=pk,
                received_at=now,
                effective_ns=status.effective_ns,
                succeeded=status.last_succeeded,
                reachable=reachable,
                applied=status.applied,
                failed_key=status.failed_key,
                error=status.error,
                pending_updates=lags[pk].pending_updates,
                lag_seconds=lags[pk].lag_seconds or 0,
                body=body,
            )
            for pk, status, body in checked
        )
        note_lag_hours([(r.server_id, now, r.pending_updates, r.lag_seconds) for r in reports])
    server_changed.send(Server, server_ids=sorted({pk for pk, _, _ in checked}))
    return reports


def _take_status(server: Server, status: AgentStatus, now: datetime) -> None:
    """Set the server's last-known status from a checked report (its row is locked)."""
    if status.effective is not None or status.rebuilt or server.effective_ns is None:
        server.effective_ns = status.effective_ns
    if status.rebuilt:
        server.rebuild_requested_at = None
    server.last_report_at = now
    server.last_succeeded = status.last_succeeded
    server.last_update_at = status.last_update
    server.failed_key = status.failed_key
    server.last_error = status.error
    server.late_keys = status.late
    server.ready, server.ready_reason = status.ready, status.ready_reason
    server.invalid_keys = status.invalid[:1000]
    server.unreachable_since = None
    server.unreachable_error = ""
    note_fingerprint(server, status)


def note_lag_hour(server_id: int, when: datetime, pending: int, lag_seconds: float) -> None:
    """Fold a report's lag into its hour (servers.models.LagHour); the caller holds the server's row."""
    note_lag_hours([(server_id, when, pending, lag_seconds)])


def note_lag_hours(rows: Iterable[tuple[int, datetime, int, float]]) -> None:
    """Fold reports' lags into their hours: the last report of an hour and the worst one in it.

    The caller holds the servers' rows, so no other writer adds an hour for them meanwhile.
    """
    folded: dict[tuple[int, int], LagHour] = {}
    for server_id, when, pending, lag in rows:
        hour = int(when.timestamp()) // 3600
        row = folded.get((server_id, hour))
        if row is None:
            folded[(server_id, hour)] = LagHour(
                server_id=server_id,
                hour=hour,
                pending_updates=pending,
                lag_seconds=lag,
                max_pending=pending,
                max_lag_seconds=lag,
            )
        else:
            _fold(row, pending, lag)
    if not folded:
        return
    servers, hours = {k[0] for k in folded}, {k[1] for k in folded}
    candidates = LagHour.objects.filter(server_id__in=servers, hour__in=hours)
    existing = [row for row in candidates if (row.server_id, row.hour) in folded]
    for row in existing:
        new = folded.pop((row.server_id, row.hour))
        _fold(row, new.pending_updates, new.lag_seconds, new.max_pending, new.max_lag_seconds)
    update_rows(existing, ["pending_updates", "lag_seconds", "max_pending", "max_lag_seconds"])
    LagHour.objects.bulk_create(folded.values())


def _fold(
    row: LagHour, pending: int, lag: float, max_pending: int | None = None, max_lag: float | None = None
) -> None:
    row.pending_updates, row.lag_seconds = pending, lag
    row.max_pending = max(row.max_pending, pending if max_pending is None else max_pending)
    row.max_lag_seconds = max(row.max_lag_seconds, lag if max_lag is None else max_lag)


def mark_unreachable(server: Server, error: str) -> None:
    """Record that the control plane could not reach the agent (shown as `unreachable`)."""
    now = timezone.now()
    error = redact(error)
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
    server_changed.send(Server, server_ids=[server.pk])


def replicas(dataset_ids: Iterable[int], with_state: bool = False) -> dict[int, list[Replica]]:
    """The servers of each dataset as publications sees them (publications.replicas; one or three queries)."""
    rows = list(
        Server.objects.filter(dataset_id__in=list(dataset_ids))
        .order_by("name")
        .values_list("pk", "dataset_id", "name", "enabled", "effective_ns", "late_keys")
    )
    states: dict[int, str] = {}
    if with_state:
        servers = list(Server.objects.filter(pk__in=[row[0] for row in rows]))
        states = {pk: lag.state for pk, lag in lags_of(servers).items()}
    found: dict[int, list[Replica]] = defaultdict(list)
    for pk, dataset_id, name, enabled, effective_ns, late_keys in rows:
        late = tuple(k for k in late_keys or () if isinstance(k, str))
        found[dataset_id].append(Replica(pk, name, enabled, effective_ns, late, states.get(pk, "")))
    return found


def request_run(server: Server, kind: str, user: Any, actor: str, trigger: str) -> Job:
    """Start an update or rebuild job on one server (dashboard or API); Conflict when it is disabled.

    A rebuild shows `rebuilding` from this moment until the agent reports it.
    """
    if not server.enabled:
        raise Conflict("server_disabled", f"{server.name} is disabled; enable it first")
    if kind == JobKind.REBUILD:
        Server.request_rebuild([server.pk], timezone.now())
    return start_job(
        kind, server=server, dataset=server.dataset, params={"trigger": trigger}, user=user, actor=actor
    )


_TRIGGER_LOCK = 0x646D7374  # advisory lock class: one debounce decision per dataset at a time


def trigger_after_publication(
    sender: Any, dataset: Dataset, user: Any, actor: str, **kwargs: Any
) -> Job | None:
    """Queue an update of the dataset's servers after a publication, unless one is already queued (debounce).

    Receiver of publications.signals.update_published. A burst of publications
    gives one job: the queued job, when it runs, sees every publication committed
    before it starts. Called after the publication committed, so a job seen
    queued here starts after it; only starting a job takes the dataset's lock.
    """
    queued = Job.objects.filter(kind=JobKind.UPDATE_ALL, dataset=dataset, status=JobStatus.QUEUED)
    if queued.exists():
        return None
    with advisory_lock(_TRIGGER_LOCK, str(dataset.pk)):
        if queued.exists():
            return None
        return start_job(
            JobKind.UPDATE_ALL,
            dataset=dataset,
            params={"trigger": RunTrigger.PUBLICATION},
            user=user,
            actor=actor,
        )
