"""The client of an agent's `serve` endpoint (GET /status, POST /update, POST /rebuild).

Used by the control plane's trigger-and-wait jobs; framework-free, like the
agent itself. `AgentClient.run_to_end` triggers a run and follows it to its end
or the deadline, raising one of the exceptions below for every other outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from dmsupdate.agent.errors import parse_retry_after

CONNECT_TIMEOUT = 5.0
# The longest single HTTP wait asked of an agent; longer runs are followed by polling
# GET /status, so no proxy between the control plane and an agent has to hold a request for long.
LONG_POLL_SECONDS = 30.0
CONNECT_ATTEMPTS = 3
BACKOFF_SECONDS = 0.5
POLL_MIN_SECONDS = 0.2
POLL_MAX_SECONDS = 5.0
# When the caller watches a run's `progress`: the POST is held this long (short runs still end
# in one request), then GET /status is polled at most this far apart.
WATCH_HOLD_SECONDS = 5.0
WATCH_POLL_SECONDS = 1.0

StatusWatcher = Callable[[dict[str, Any]], None]


class AgentUnreachable(Exception):
    """The agent could not be reached (connection refused, DNS, timeouts) after retries."""


class AgentRefused(Exception):
    """The agent answered, but not with a run (wrong token, unexpected status)."""


class AgentBusy(Exception):
    """The agent stayed busy with another run until the deadline; `status` is the last it showed."""

    def __init__(self, message: str, status: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status


class AgentTimeout(Exception):
    """The run was still going at the deadline; `status` is the last the agent showed."""

    def __init__(self, message: str, status: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status


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


def _json_or_refuse(response: requests.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise AgentRefused(f"{what} answered {response.status_code} with a body that is not JSON") from exc
    if not isinstance(body, dict):
        raise AgentRefused(f"{what} answered {response.status_code} with JSON that is not an object")
    return body


@dataclass
class AgentClient:
    """Talks to one agent's `serve` endpoint with its token, timeouts and retries."""

    base_url: str
    token: str
    session: requests.Session = field(default_factory=requests.Session)

    def _url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def _request(
        self, method: str, path: str, deadline: Deadline, read_timeout: float, **kw: Any
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
                wait_for = parse_retry_after(response.headers.get("Retry-After"))
                wait_for = delay if wait_for is None else wait_for
                if wait_for >= deadline.remaining():
                    return response
                deadline.sleep(wait_for)
                delay = min(delay * 2, POLL_MAX_SECONDS)
                continue
            return response

    def status(self, deadline: Deadline) -> dict[str, Any]:
        """GET /status: the agent's status.json plus `running`."""
        response = self._request("GET", "/status", deadline, read_timeout=CONNECT_TIMEOUT * 2)
        return _json_or_refuse(response, "GET /status")

    def run(self, kind: str, deadline: Deadline, longest: float | None = None) -> tuple[int, dict[str, Any]]:
        """POST /update or /rebuild asking the agent to hold the answer until done (within limits)."""
        hold = max(1.0, min(longest or LONG_POLL_SECONDS, LONG_POLL_SECONDS, deadline.remaining()))
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

    def run_to_end(self, kind: str, deadline: Deadline, watch: StatusWatcher | None = None) -> dict[str, Any]:
        """Trigger a run and follow it to its end; return the agent's final status.

        When another run (a pull, another trigger) is going, wait for it to end and
        ask again, so the run that counts includes everything published before the
        call. `watch` is given each status seen while the run goes (its `progress`).
        Raises AgentUnreachable, AgentRefused, AgentBusy or AgentTimeout.
        """
        while True:
            code, body = self.run(kind, deadline, WATCH_HOLD_SECONDS if watch else None)
            if code == 200:
                return body
            if code == 202:
                return self._follow(deadline, started=True, watch=watch)
            try:
                self._follow(deadline, started=False)
            except AgentTimeout as exc:
                raise AgentBusy(
                    f"the agent was busy with another run for the whole {deadline.seconds:g} s", exc.status
                ) from exc

    def _follow(
        self, deadline: Deadline, started: bool, watch: StatusWatcher | None = None
    ) -> dict[str, Any]:
        """Poll GET /status until `running` is false; AgentTimeout if the deadline comes first."""
        pause = POLL_MIN_SECONDS
        longest = WATCH_POLL_SECONDS if watch else POLL_MAX_SECONDS
        while True:
            last = self.status(deadline)
            if not last.get("running"):
                return last
            if watch is not None:
                watch(last)
            if deadline.passed:
                raise AgentTimeout(
                    f"the agent was still running after {deadline.seconds:g} s"
                    + ("" if started else " (busy)"),
                    last,
                )
            deadline.sleep(pause)
            pause = min(pause * 1.5, longest)
