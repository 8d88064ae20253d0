"""Trigger and wait: ask agents to update (or rebuild) and wait for each to finish.

A job covers one server or every enabled server of a dataset. Agents with an
`agent_url` are called on their `serve` endpoint (`POST /update` or `/rebuild`
with their bearer token); pull-only agents are waited for until their next
status report. Every server gets an `UpdateRun`, its status is recorded through
`record_report` (or `mark_unreachable`), and the job's result holds one entry
per server plus a one-line summary such as `3 ok, 1 unreachable, 1 failed`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.services import record
from jobs.models import Job, JobKind
from jobs.services import JobFailed, progress
from servers.models import RunResult, Server, StatusReport, UpdateRun
from servers.services import ReportError, mark_unreachable, parse_effective, record_report

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
# The longest single HTTP wait asked of an agent; longer runs are followed by polling
# GET /status, so no proxy between the control plane and an agent has to hold a request for long.
LONG_POLL_SECONDS = 30.0
CONNECT_ATTEMPTS = 3
BACKOFF_SECONDS = 0.5
POLL_MIN_SECONDS = 0.2
POLL_MAX_SECONDS = 5.0
# Order of the summary line, worst news last so the eye finds it at the end.
RESULT_ORDER = (
    RunResult.OK,
    RunResult.BUSY,
    RunResult.TIMEOUT,
    RunResult.UNREACHABLE,
    RunResult.FAILED,
)


class AgentUnreachable(Exception):
    """The agent could not be reached (connection refused, DNS, timeouts) after retries."""


class AgentRefused(Exception):
    """The agent answered, but not with a run (wrong token, unexpected status)."""


class AgentBusy(Exception):
    """The agent is still busy with another run at the deadline."""


class Deadline:
    """The time left for one server; every wait is clipped to it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @property
    def passed(self) -> bool:
        return self.remaining() <= 0

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self.remaining())))


def retry_after_seconds(response: requests.Response, default: float) -> float:
    """The delay a 429/503 asks for (`Retry-After`: seconds or an HTTP date), else `default`."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return default
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, (when - timezone.now()).total_seconds())


@dataclass
class AgentClient:
    """Talks to one agent's `serve` endpoint with its token, timeouts and retries."""

    base_url: str
    token: str
    session: requests.Session = field(default_factory=requests.Session)

    def _url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def _request(
        self, method: str, path: str, deadline: Deadline, read_timeout: float, **kw
    ) -> requests.Response:
        """One request, retried on connection errors (with backoff) and on 429/503 (after Retry-After)."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        failures = 0
        delay = BACKOFF_SECONDS
        while True:
            try:
                response = self.session.request(
                    method,
                    self._url(path),
                    headers=headers,
                    timeout=(CONNECT_TIMEOUT, read_timeout),
                    **kw,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                failures += 1
                if failures >= CONNECT_ATTEMPTS or deadline.remaining() <= delay:
                    raise AgentUnreachable(f"{method} {self._url(path)}: {_reason(exc)}") from exc
                deadline.sleep(delay)
                delay *= 2
                continue
            if response.status_code in (429, 503):
                wait_for = retry_after_seconds(response, delay)
                if wait_for >= deadline.remaining():
                    return response
                deadline.sleep(wait_for)
                delay = min(delay * 2, POLL_MAX_SECONDS)
                continue
            return response

    def status(self, deadline: Deadline) -> dict:
        """GET /status: the agent's status.json plus `running`."""
        response = self._request("GET", "/status", deadline, read_timeout=CONNECT_TIMEOUT * 2)
        return _json_or_refuse(response, "GET /status")

    def run(self, kind: str, deadline: Deadline) -> tuple[int, dict]:
        """POST /update or /rebuild asking the agent to hold the answer until done (within limits)."""
        hold = max(1.0, min(LONG_POLL_SECONDS, deadline.remaining()))
        response = self._request(
            "POST",
            f"/{kind}",
            deadline,
            read_timeout=hold + CONNECT_TIMEOUT * 2,
            params={"wait": f"{hold:g}"},
        )
        if response.status_code in (200, 202, 409):
            return response.status_code, _json_or_refuse(response, f"POST /{kind}")
        if response.status_code == 401:
            raise AgentRefused(
                f"the agent refused the token (401) for POST /{kind}: check the server's agent token"
            )
        if response.status_code in (429, 503):
            raise AgentBusy(f"the agent asked to retry later ({response.status_code}) until the deadline")
        raise AgentRefused(f"POST /{kind} answered {response.status_code}: {response.text[:300]}")


def _reason(exc: Exception) -> str:
    """A short human reason for a requests exception (without the nested urllib3 repr)."""
    if isinstance(exc, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.ReadTimeout):
        return "no answer before the read timeout"
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    return text[:300]


def _json_or_refuse(response: requests.Response, what: str) -> dict:
    try:
        body = response.json()
    except ValueError as exc:
        raise AgentRefused(f"{what} answered {response.status_code} with a body that is not JSON") from exc
    if not isinstance(body, dict):
        raise AgentRefused(f"{what} answered {response.status_code} with JSON that is not an object")
    return body


@dataclass
class Outcome:
    """How one server's run ended, before it is written to its UpdateRun."""

    result: str
    status: dict | None = None
    error: str = ""
    failed_key: str = ""


def wait_for_push_agent(server: Server, kind: str, deadline: Deadline) -> Outcome:
    """Trigger a run on the agent's serve endpoint and follow it to its end or the deadline."""
    client = AgentClient(server.agent_url, server.agent_token)
    try:
        while True:
            code, body = client.run(kind, deadline)
            if code == 200:
                return Outcome(RunResult.OK, body)
            if code == 202:
                return _poll_until_idle(client, deadline, started=True)
            # 409: another run (a pull, another trigger) is in progress. Wait for it to end, then
            # ask again so the run that counts includes everything published before this job.
            idle = _poll_until_idle(client, deadline, started=False)
            if idle.result != RunResult.OK:
                return Outcome(
                    RunResult.BUSY,
                    idle.status,
                    f"the agent was busy with another run for the whole {deadline.seconds:g} s",
                )
    except AgentUnreachable as exc:
        return Outcome(RunResult.UNREACHABLE, error=str(exc))
    except AgentBusy as exc:
        return Outcome(RunResult.BUSY, error=str(exc))
    except AgentRefused as exc:
        return Outcome(RunResult.FAILED, error=str(exc))


def _poll_until_idle(client: AgentClient, deadline: Deadline, started: bool) -> Outcome:
    """Poll GET /status until `running` is false; TIMEOUT if the deadline comes first."""
    pause = POLL_MIN_SECONDS
    last: dict | None = None
    while True:
        last = client.status(deadline)
        if not last.get("running"):
            return Outcome(RunResult.OK, last)
        if deadline.passed:
            return Outcome(
                RunResult.TIMEOUT,
                last,
                f"the agent was still running after {deadline.seconds:g} s" + ("" if started else " (busy)"),
            )
        deadline.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX_SECONDS)


def wait_for_pull_agent(server: Server, since, deadline: Deadline, kind: str = "update") -> Outcome:
    """Wait until a pull-only agent reports after `since` (its next `watch` cycle).

    For a rebuild, wait for the report of the rebuild itself: the agent learns of the
    request from the answer to its next report and rebuilds on the following cycle.
    """
    pause = POLL_MIN_SECONDS
    reports = StatusReport.objects.filter(server=server, reachable=True, received_at__gte=since)
    if kind == "rebuild":
        reports = reports.filter(body__lastRun="rebuild")
    while True:
        report = reports.order_by("-received_at").first()
        if report is not None:
            return Outcome(RunResult.OK, dict(report.body), error="", failed_key="")
        if deadline.passed:
            return Outcome(
                RunResult.TIMEOUT,
                error=f"no report from the pull agent within {deadline.seconds:g} s",
            )
        deadline.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX_SECONDS)


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
    if kind == "rebuild":
        # Shown as `rebuilding` until the agent's next report (servers.services.state_of).
        Server.objects.filter(pk__in=[s.pk for s in servers]).update(rebuild_requested_at=now)
    return {run.server_id: run for run in runs}


@dataclass
class AgentAnswer:
    """What one agent call brought back, and when: the run's own duration, without bookkeeping."""

    outcome: Outcome
    finished: Any
    duration: float


def call_agent(server: Server, kind: str, timeout: float, since) -> AgentAnswer:
    """Trigger the agent (or wait for a pull agent's report) until it ends or `timeout` passes.

    Push agents need no database here, so a pool of these calls costs no connections.
    """
    clock = time.monotonic()
    deadline = Deadline(timeout)
    if server.agent_url:
        outcome = wait_for_push_agent(server, kind, deadline)
    else:
        outcome = wait_for_pull_agent(server, since, deadline, kind)
    return AgentAnswer(outcome, timezone.now(), time.monotonic() - clock)


def finish_run(
    server: Server, kind: str, job: Job | None, run: UpdateRun, answer: AgentAnswer, audit_ok: bool = True
) -> dict:
    """Record the server's status, close its UpdateRun and audit it; returns the job's entry for it.

    With `audit_ok` false an `ok` run is left for the caller to audit with the others in one row.
    """
    outcome = _record_status(server, kind, answer.outcome, reported_by_agent=bool(server.agent_url))
    if kind == "rebuild" and outcome.result in (RunResult.UNREACHABLE, RunResult.BUSY):
        # The rebuild never started: do not show `rebuilding` for a request the agent never took.
        Server.objects.filter(pk=server.pk, rebuild_requested_at=run.started_at).update(
            rebuild_requested_at=None
        )
    status = outcome.status or {}
    applied = status.get("applied") or 0
    if isinstance(applied, list):
        applied = len(applied)
    try:
        after = parse_effective(status.get("effectiveDate")) if status else None
    except ReportError:
        after = None
    run.finished_at = answer.finished
    run.result = outcome.result
    run.ops_applied = applied if isinstance(applied, int) else 0
    run.effective_after_ns = after
    run.failed_key = outcome.failed_key[:1024]
    run.error = outcome.error
    run.save()
    entry = {
        "result": outcome.result,
        "run": run.pk,
        "ops_applied": run.ops_applied,
        "effective_before": _path(run.effective_before_ns),
        "effective_after": _path(run.effective_after_ns),
        "duration_seconds": round(answer.duration, 3),
        "failed_key": outcome.failed_key,
        "error": outcome.error,
    }
    if kind == "rebuild" and not server.agent_url:
        entry["note"] = (
            "pull-only agent: asked through the answer to its report; this job waited for its rebuild"
        )
    if outcome.result == RunResult.OK and not audit_ok:
        return entry
    record(
        job.actor if job and job.actor else "system",
        f"server.{kind}.{outcome.result}",
        server.name,
        {k: v for k, v in entry.items() if v not in ("", None)} | {"job": job.pk if job else None},
    )
    return entry


def trigger_server(server: Server, kind: str, job: Job | None, timeout: float, trigger: str) -> dict:
    """Run an update or rebuild on one server and wait for it; returns the result entry of the job.

    Writes an UpdateRun, the server's status (record_report / mark_unreachable) and an audit row.
    """
    run = begin_runs([server], kind, job, trigger)[server.pk]
    return finish_run(server, kind, job, run, call_agent(server, kind, timeout, run.started_at))


def _record_status(server: Server, kind: str, outcome: Outcome, reported_by_agent: bool) -> Outcome:
    """Store what the agent said (or that it was unreachable) and derive ok/failed from it."""
    if outcome.result == RunResult.UNREACHABLE:
        mark_unreachable(server, outcome.error)
        return outcome
    if outcome.status is None or outcome.result in (RunResult.TIMEOUT, RunResult.BUSY):
        return outcome
    body = {k: v for k, v in outcome.status.items() if k != "running"}
    if reported_by_agent:
        if kind == "rebuild":
            body["rebuilt"] = True
        try:
            record_report(server, body)
        except ReportError as exc:
            return Outcome(RunResult.FAILED, outcome.status, f"the agent's status is malformed: {exc}")
    if body.get("lastSucceeded") is False or body.get("failedKey") or body.get("error"):
        return Outcome(
            RunResult.FAILED,
            outcome.status,
            str(body.get("error") or "the run failed"),
            str(body.get("failedKey") or ""),
        )
    return outcome


def _path(ns: int | None) -> str | None:
    from dmsupdate.state.keys import EffectiveTime

    return EffectiveTime(ns).path if ns is not None else None


def summarize(results: dict[str, dict]) -> str:
    """`3 ok, 1 unreachable, 1 failed`: the counts per result, in a fixed order."""
    counts = Counter(entry["result"] for entry in results.values())
    parts = [f"{counts[r]} {r}" for r in RESULT_ORDER if counts.get(r)]
    return ", ".join(parts) or "no servers"


def servers_for(job: Job) -> list[Server]:
    """The servers a trigger job covers: its one server, or every enabled server of its dataset."""
    if job.server_id is not None:
        return [Server.objects.select_related("dataset").get(pk=job.server_id)]
    if job.dataset_id is None:
        raise JobFailed("an update-all job needs a dataset")
    return list(Server.objects.filter(dataset_id=job.dataset_id, enabled=True).order_by("name"))


# Database connections the pool threads may hold at once to record answers (bounded, whatever
# TRIGGER_CONCURRENCY is, so a wide fan-out cannot exhaust PostgreSQL's connection limit).
RECORDERS = 8
# How often a trigger job writes its progress (and heartbeat) while answers come in.
PROGRESS_SECONDS = 1.0
_recorders = threading.BoundedSemaphore(RECORDERS)


def _trigger_in_thread(
    server: Server, kind: str, job: Job, run: UpdateRun, timeout: float, go: threading.Event
) -> dict:
    """Pool worker: wait on the agent, then record its answer on the thread's own connection.

    Recording here rather than in the job's thread lets the answers of a whole fleet,
    which tend to arrive together, be written in parallel.
    """
    # Start together: threads that already talk to agents would slow down (through the GIL)
    # the job's thread still starting the others, and the last agent would be called seconds late.
    go.wait()
    try:
        answer = call_agent(server, kind, timeout, run.started_at)
        with _recorders:
            with transaction.atomic():
                return finish_run(server, kind, job, run, answer, audit_ok=False)
    finally:
        connection.close()


def run_trigger_job(job: Job) -> dict[str, Any]:
    """Runner of `update`, `update_all` and `rebuild` jobs (jobs.services.RUNNERS).

    params: `timeout` (seconds per server), `trigger` (manual/api/publication/schedule),
    `debounce` (seconds to wait first, so late files of a burst of publications are included).
    Ends `failed` (with the full per-server result) when any server did not end `ok`.
    """
    conf = settings.DMSUPDATE
    params = job.params or {}
    kind = "rebuild" if job.kind == JobKind.REBUILD else "update"
    timeout = float(params.get("timeout") or conf["TRIGGER_TIMEOUT_SECONDS"])
    trigger = str(params.get("trigger") or "manual")
    debounce = params.get("debounce")
    if debounce is None and trigger == "publication":
        debounce = conf["TRIGGER_DEBOUNCE_SECONDS"]
    if debounce:
        progress(job, 0, f"waiting {float(debounce):g} s for more publications")
        time.sleep(float(debounce))
    servers = servers_for(job)
    if not servers:
        return {"servers": {}, "summary": "no enabled servers"}
    total = len(servers)
    results: dict[str, dict] = {}
    progress(job, 0, f"0 of {total} servers done")
    workers = max(1, min(int(conf["TRIGGER_CONCURRENCY"]), total))
    # All runs are opened first in one insert, so no agent's trigger waits on the database.
    runs = begin_runs(servers, kind, job, trigger)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"job{job.pk}") as pool:
        go = threading.Event()
        pending: dict[Future, Server] = {
            pool.submit(_trigger_in_thread, s, kind, job, runs[s.pk], timeout, go): s for s in servers
        }
        go.set()
        shown = time.monotonic()
        while pending:
            # Wake up now and then even when no server finished, to keep the job's heartbeat fresh.
            done, _ = wait(pending, timeout=10, return_when=FIRST_COMPLETED)
            for future in done:
                server = pending.pop(future)
                try:
                    results[server.name] = future.result()
                except Exception as exc:  # noqa: BLE001 - one server's crash must not lose the others
                    log.error("trigger of %s failed: %s", server.name, exc, exc_info=exc)
                    results[server.name] = {
                        "result": RunResult.FAILED,
                        "error": f"{exc.__class__.__name__}: {exc}",
                    }
                    UpdateRun.objects.filter(pk=runs[server.pk].pk).update(
                        result=RunResult.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
                    )
            # Answers of a fleet arrive together: one progress write per PROGRESS_SECONDS, not one each.
            if not pending or time.monotonic() - shown >= PROGRESS_SECONDS:
                progress(job, int(100 * len(results) / total), f"{len(results)} of {total} servers done")
                shown = time.monotonic()
    ordered = {name: results[name] for name in sorted(results)}
    result = {"servers": ordered, "summary": summarize(ordered)}
    ok = {name: e.get("effective_after") for name, e in ordered.items() if e["result"] == RunResult.OK}
    if ok:
        # Failures were audited one row each, with their key and error; the successes share one row.
        target = servers[0].name if job.server_id else job.dataset.name
        record(job.actor or "system", f"server.{kind}.ok", target, {"job": job.pk, "servers": ok})
    if any(entry["result"] != RunResult.OK for entry in ordered.values()):
        raise JobFailed(result["summary"], result)
    return result
