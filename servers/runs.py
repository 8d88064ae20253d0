"""Update runs: open one per server, then record how it ended (UpdateRun, the server's status, the audit log).

Every server a trigger covers gets an UpdateRun; its status is recorded through
`record_reports` (or `mark_unreachable`), and the job's result holds one entry per
server plus a one-line summary such as `3 ok, 1 unreachable, 1 failed`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from audit.services import record
from dmsupdate.rows import update_rows
from dmsupdate.state.keys import EffectiveTime
from dmsupdate.state.status import AgentStatus, InvalidStatus, parse_status
from jobs.models import Job
from servers.agents import AgentAnswer, Outcome
from servers.models import RunKind, RunResult, Server, UpdateRun
from servers.services import mark_unreachable, record_reports

# Skipped keys a job's result lists per server (the run keeps them all).
SKIPPED_SHOWN = 50

# Order of the summary line, worst news last so the eye finds it at the end.
RESULT_ORDER = (
    RunResult.OK,
    RunResult.BUSY,
    RunResult.TIMEOUT,
    RunResult.UNREACHABLE,
    RunResult.FAILED,
)


def begin_runs(servers: list[Server], kind: str, job: Job | None, trigger: str) -> dict[int, UpdateRun]:
    """Open one UpdateRun (result `running`) per server in one insert; a rebuild marks them `rebuilding`."""
    now = timezone.now()
    runs = UpdateRun.objects.bulk_create(
        UpdateRun(
            server=server,
            job=job,
            kind=kind,
            trigger=trigger,
            requested_by=job.requested_by if job else None,
            started_at=now,
            effective_before_ns=server.effective_ns,
        )
        for server in servers
    )
    if kind == RunKind.REBUILD:
        Server.request_rebuild([s.pk for s in servers], now)
    return {run.server_id: run for run in runs}


def longest_first(servers: list[Server]) -> list[Server]:
    """The order to call the servers in: the one whose last run took longest first (never run: first of all).

    Calls start one after the other (for a fleet of 1,000 that takes a fraction of a
    second, and TRIGGER_CONCURRENCY may hold some back): the longest runs started first
    do not end the job late. One query; servers that took as long keep their order.
    """
    if len(servers) < 2:
        return servers
    last = (
        UpdateRun.objects.filter(server=OuterRef("pk"), finished_at__isnull=False)
        .order_by("-started_at")
        .annotate(took=F("finished_at") - F("started_at"))
        .values("took")[:1]
    )
    took = dict(
        Server.objects.filter(pk__in=[s.pk for s in servers])
        .annotate(took=Subquery(last))
        .values_list("pk", "took")
    )
    unknown = float("-inf")
    return sorted(servers, key=lambda s: unknown if took.get(s.pk) is None else -took[s.pk].total_seconds())


def _path(ns: int | None) -> str | None:
    return EffectiveTime(ns).path if ns is not None else None


def finish_runs(
    batch: Sequence[tuple[Server, AgentAnswer]],
    kind: str,
    job: Job | None,
    opened: dict[int, UpdateRun],
    audit_ok: bool = True,
) -> dict[str, dict]:
    """Record how each server's run ended: its status, its UpdateRun, its audit row; the job's entries by name.

    A batch of answers costs a fixed number of statements (the reports, the runs and
    the apply rates one statement each) plus an audit row per run that did not end
    ok. With `audit_ok` false the ok runs are left for the caller to audit in one row.
    The caller runs it in one transaction.
    """
    outcomes = _record_statuses(batch)
    runs: list[UpdateRun] = []
    rates: list[tuple[int, int, float]] = []
    entries: dict[str, dict] = {}
    for server, answer in batch:
        outcome = outcomes[server.pk]
        if kind == RunKind.REBUILD and outcome.result in (RunResult.UNREACHABLE, RunResult.BUSY):
            # The rebuild never started: do not show `rebuilding` for a request the agent never took.
            Server.withdraw_rebuild(server.pk, opened[server.pk].started_at)
        run = _close(opened[server.pk], answer, outcome)
        runs.append(run)
        if kind == RunKind.UPDATE and outcome.result == RunResult.OK and run.ops_applied:
            rates.append((server.pk, run.ops_applied, answer.duration))
        entries[server.name] = _entry(server, kind, run, answer, outcome)
    update_rows(runs, CLOSED_FIELDS)
    Server.note_apply_rates(rates)
    for server, _ in batch:
        entry = entries[server.name]
        if entry["result"] != RunResult.OK or audit_ok:
            record(
                job.actor if job and job.actor else "system",
                f"server.{kind}.{entry['result']}",
                server.name,
                {k: v for k, v in entry.items() if v not in ("", None, [], 0) or k == "ops_applied"}
                | {"job": job.pk if job else None},
            )
    return entries


# What closing a run sets (UpdateRun fields).
CLOSED_FIELDS = [
    "finished_at",
    "result",
    "ops_applied",
    "effective_after_ns",
    "failed_key",
    "error",
    "skipped",
]


def _close(run: UpdateRun, answer: AgentAnswer, outcome: Outcome) -> UpdateRun:
    try:
        status = parse_status(outcome.status or {})
    except InvalidStatus:
        status = parse_status({})
    run.finished_at = answer.finished
    run.result = outcome.result
    run.ops_applied = status.applied
    run.effective_after_ns = status.effective_ns
    run.failed_key = outcome.failed_key[:1024]
    run.error = outcome.error
    run.skipped = [{"key": s.key, "reason": s.reason} for s in status.skipped]
    return run


def _entry(server: Server, kind: str, run: UpdateRun, answer: AgentAnswer, outcome: Outcome) -> dict:
    entry = {
        "result": outcome.result,
        "run": run.pk,
        "ops_applied": run.ops_applied,
        "skipped": run.skipped[:SKIPPED_SHOWN],
        "skipped_count": len(run.skipped),
        "effective_before": _path(run.effective_before_ns),
        "effective_after": _path(run.effective_after_ns),
        "duration_seconds": round(answer.duration, 3),
        "failed_key": outcome.failed_key,
        "error": outcome.error,
    }
    if kind == RunKind.REBUILD and not server.agent_url:
        entry["note"] = (
            "pull-only agent: asked through the answer to its report; this job waited for its rebuild"
        )
    return entry


def _record_statuses(batch: Sequence[tuple[Server, AgentAnswer]]) -> dict[int, Outcome]:
    """Store what each agent said (or that it was unreachable) and derive ok/failed from it, by server.

    A push agent with a `controlplane` entry reports its own status before it answers the
    trigger: that report is not recorded a second time (one status report per run). A
    pull agent's reports came through the API while the job waited for them.
    """
    outcomes: dict[int, Outcome] = {}
    to_record: list[tuple[Server, dict, AgentStatus]] = []
    for server, answer in batch:
        outcome = answer.outcome
        outcomes[server.pk] = outcome
        if outcome.result == RunResult.UNREACHABLE:
            mark_unreachable(server, outcome.error)
            continue
        if outcome.status is None or outcome.result in (RunResult.TIMEOUT, RunResult.BUSY):
            continue
        body = {k: v for k, v in outcome.status.items() if k not in ("running", "progress")}
        try:
            status = parse_status(body)
        except InvalidStatus as exc:
            outcomes[server.pk] = Outcome(
                RunResult.FAILED, outcome.status, f"the agent's status is malformed: {exc}"
            )
            continue
        if status.last_succeeded is False or status.failed_key or status.error:
            outcomes[server.pk] = Outcome(
                RunResult.FAILED, outcome.status, status.error or "the run failed", status.failed_key
            )
        if server.agent_url:
            to_record.append((server, body, status))
    recorded = _already_recorded([(server, status) for server, _, status in to_record])
    record_reports([(server, body) for server, body, _ in to_record if server.pk not in recorded])
    return outcomes


def _already_recorded(reports: list[tuple[Server, AgentStatus]]) -> set[int]:
    """The servers whose recorded status is the one given (the agent's own report arrived first)."""
    if not reports:
        return set()
    rows = Server.objects.filter(pk__in=[server.pk for server, _ in reports]).values_list(
        "pk", "last_update_at", "effective_ns", "last_succeeded"
    )
    current = {pk: (at, ns, ok) for pk, at, ns, ok in rows}
    return {
        server.pk
        for server, status in reports
        if status.last_update is not None
        and current.get(server.pk) == (status.last_update, status.effective_ns, status.last_succeeded)
    }


def summarize(results: dict[str, dict]) -> str:
    """`3 ok, 1 unreachable, 1 failed`: the counts per result, in a fixed order."""
    counts = Counter(entry["result"] for entry in results.values())
    parts = [f"{counts[r]} {r}" for r in RESULT_ORDER if counts.get(r)]
    return ", ".join(parts) or "no servers"
