"""Calling a server's agent and waiting for its run: pushed through `serve`, or awaited from a pull agent's report.

Push agents are called with dmsupdate.agent.client (no database needed, so a
pool of these calls costs no connections), or many at once from one event loop
(servers.fleet, `call_in_fleet`); a pull-only agent is waited for
until its next status report arrives.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from dmsupdate.agent.client import (
    POLL_MAX_SECONDS,
    POLL_MIN_SECONDS,
    AgentBusy,
    AgentClient,
    AgentTimeout,
    AgentUnreachable,
    CallFailed,
    Deadline,
    StatusWatcher,
)
from servers.fleet import Fleet, Reply
from servers.models import RunKind, RunResult, Server, StatusReport


@dataclass
class Outcome:
    """How one server's run ended, before it is written to its UpdateRun."""

    result: str
    status: dict | None = None
    error: str = ""
    failed_key: str = ""


@dataclass
class AgentAnswer:
    """What one agent call brought back, and when: the run's own duration, without bookkeeping."""

    outcome: Outcome
    finished: datetime
    duration: float


def wait_for_push_agent(
    server: Server, kind: str, deadline: Deadline, watch: StatusWatcher | None = None
) -> Outcome:
    """Trigger a run on the agent's serve endpoint and follow it to its end or the deadline."""
    client = AgentClient(server.agent_url, server.agent_token)
    try:
        return Outcome(RunResult.OK, client.run_to_end(kind, deadline, watch))
    except CallFailed as exc:
        return _failed(exc)


def _failed(exc: CallFailed) -> Outcome:
    if isinstance(exc, AgentUnreachable):
        return Outcome(RunResult.UNREACHABLE, error=str(exc))
    if isinstance(exc, AgentBusy):
        return Outcome(RunResult.BUSY, exc.status, str(exc))
    if isinstance(exc, AgentTimeout):
        return Outcome(RunResult.TIMEOUT, exc.status, str(exc))
    return Outcome(RunResult.FAILED, error=str(exc))  # AgentRefused


def _answer(reply: Reply) -> AgentAnswer:
    outcome = _failed(reply.failure) if reply.failure else Outcome(RunResult.OK, reply.status)
    return AgentAnswer(outcome, reply.finished, reply.duration)


def call_in_fleet(
    fleet: Fleet, server: Server, kind: str, timeout: float, watch: StatusWatcher | None = None
) -> Future[AgentAnswer]:
    """Trigger a push agent from the fleet's event loop; the future holds what `call_agent` would return."""
    return fleet.run_to_end(server.agent_url, server.agent_token, kind, timeout, _answer, watch)


def wait_for_pull_agent(server: Server, since: datetime, deadline: Deadline, kind: str) -> Outcome:
    """Wait until a pull-only agent reports after `since` (its next `watch` cycle).

    For a rebuild, wait for the report of the rebuild itself: the agent learns of the
    request from the answer to its next report and rebuilds on the following cycle.
    """
    pause = POLL_MIN_SECONDS
    reports = StatusReport.objects.filter(server=server, reachable=True, received_at__gte=since)
    if kind == RunKind.REBUILD:
        reports = reports.filter(body__lastRun="rebuild")
    while True:
        report = reports.order_by("-received_at").first()
        if report is not None:
            return Outcome(RunResult.OK, dict(report.body))
        if deadline.passed:
            return Outcome(
                RunResult.TIMEOUT,
                error=f"no report from the pull agent within {deadline.seconds:g} s",
            )
        deadline.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX_SECONDS)


def call_agent(
    server: Server, kind: str, timeout: float, since: datetime, watch: StatusWatcher | None = None
) -> AgentAnswer:
    """Trigger the agent (or wait for a pull agent's report) until it ends or `timeout` passes.

    `watch` sees the push agent's status while its run goes (servers.jobs shows its progress).
    """
    clock = time.monotonic()
    deadline = Deadline(timeout)
    if server.agent_url:
        outcome = wait_for_push_agent(server, kind, deadline, watch)
    else:
        outcome = wait_for_pull_agent(server, since, deadline, kind)
    return AgentAnswer(outcome, timezone.now(), time.monotonic() - clock)
