"""Update runs: open one per server, then record how it ended (UpdateRun, the server's status, the audit log).

Every server a trigger covers gets an UpdateRun; its status is recorded through
`record_report` (or `mark_unreachable`), and the job's result holds one entry per
server plus a one-line summary such as `3 ok, 1 unreachable, 1 failed`.
"""

from __future__ import annotations

from collections import Counter

from django.utils import timezone

from audit.services import record
from dmsupdate.state.keys import EffectiveTime
from dmsupdate.state.status import InvalidStatus, parse_status
from jobs.models import Job
from servers.agents import AgentAnswer, Outcome
from servers.models import RunKind, RunResult, Server, UpdateRun
from servers.services import mark_unreachable, record_report

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


def _path(ns: int | None) -> str | None:
    return EffectiveTime(ns).path if ns is not None else None


def finish_run(
    server: Server, kind: str, job: Job | None, run: UpdateRun, answer: AgentAnswer, audit_ok: bool = True
) -> dict:
    """Record the server's status, close its UpdateRun and audit it; returns the job's entry for it.

    With `audit_ok` false an `ok` run is left for the caller to audit with the others in one row.
    """
    outcome = _record_status(server, kind, answer.outcome, reported_by_agent=bool(server.agent_url))
    if kind == RunKind.REBUILD and outcome.result in (RunResult.UNREACHABLE, RunResult.BUSY):
        # The rebuild never started: do not show `rebuilding` for a request the agent never took.
        Server.withdraw_rebuild(server.pk, run.started_at)
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
    run.save()
    if kind == RunKind.UPDATE and outcome.result == RunResult.OK and status.applied:
        Server.note_apply_rate(server.pk, status.applied, answer.duration)
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
    if outcome.result == RunResult.OK and not audit_ok:
        return entry
    record(
        job.actor if job and job.actor else "system",
        f"server.{kind}.{outcome.result}",
        server.name,
        {k: v for k, v in entry.items() if v not in ("", None, [], 0) or k == "ops_applied"}
        | {"job": job.pk if job else None},
    )
    return entry


def _record_status(server: Server, kind: str, outcome: Outcome, reported_by_agent: bool) -> Outcome:
    """Store what the agent said (or that it was unreachable) and derive ok/failed from it.

    A push agent with a `controlplane` entry reports its own status before it answers the
    trigger: that report is not recorded a second time (one status report per run).
    """
    if outcome.result == RunResult.UNREACHABLE:
        mark_unreachable(server, outcome.error)
        return outcome
    if outcome.status is None or outcome.result in (RunResult.TIMEOUT, RunResult.BUSY):
        return outcome
    body = {k: v for k, v in outcome.status.items() if k not in ("running", "progress")}
    try:
        status = parse_status(body)
    except InvalidStatus as exc:
        return Outcome(RunResult.FAILED, outcome.status, f"the agent's status is malformed: {exc}")
    if reported_by_agent and not _already_recorded(server, status):
        record_report(server, body)
    if status.last_succeeded is False or status.failed_key or status.error:
        return Outcome(RunResult.FAILED, outcome.status, status.error or "the run failed", status.failed_key)
    return outcome


def _already_recorded(server: Server, status) -> bool:
    """True when the server's recorded status is this one (the agent's own report arrived first)."""
    if status.last_update is None:
        return False
    return Server.objects.filter(
        pk=server.pk,
        last_update_at=status.last_update,
        effective_ns=status.effective_ns,
        last_succeeded=status.last_succeeded,
    ).exists()


def summarize(results: dict[str, dict]) -> str:
    """`3 ok, 1 unreachable, 1 failed`: the counts per result, in a fixed order."""
    counts = Counter(entry["result"] for entry in results.values())
    parts = [f"{counts[r]} {r}" for r in RESULT_ORDER if counts.get(r)]
    return ", ".join(parts) or "no servers"
