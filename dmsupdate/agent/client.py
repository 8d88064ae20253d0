"""The client of an agent's `serve` endpoint (GET /status, POST /update, POST /rebuild).

Used by the control plane's trigger-and-wait jobs; framework-free, like the
agent itself. What is said to an agent (retries, Retry-After, following a run,
the exceptions below for every outcome but a finished run) is written once, as
`Talk`: generators that yield an `Ask` (a request to send) or seconds to wait,
and are sent back the agent's `Answer`. `AgentClient` speaks it over requests,
one call per thread; servers.fleet speaks it to many agents at once
from one event loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
T = TypeVar("T")


class CallFailed(Exception):
    """A call to an agent ended without a finished run (one of the four below)."""


class AgentUnreachable(CallFailed):
    """The agent could not be reached (connection refused, DNS, timeouts) after retries."""


class AgentRefused(CallFailed):
    """The agent answered, but not with a run (wrong token, unexpected status)."""


class AgentBusy(CallFailed):
    """The agent stayed busy with another run until the deadline; `status` is the last it showed."""

    def __init__(self, message: str, status: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status


class AgentTimeout(CallFailed):
    """The run was still going at the deadline; `status` is the last the agent showed."""

    def __init__(self, message: str, status: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status


class NoAnswer(Exception):
    """A request got no HTTP answer (refused, reset, timed out); the message is the short reason."""


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

    def clip(self, seconds: float) -> float:
        """A pause of `seconds`, cut short at the deadline."""
        return max(0.0, min(seconds, self.remaining()))

    def sleep(self, seconds: float) -> None:
        time.sleep(self.clip(seconds))


@dataclass(frozen=True)
class Ask:
    """One HTTP request to an agent, sent with its token by whichever driver speaks the `Talk`."""

    method: str
    url: str
    read_timeout: float
    params: dict[str, str] | None = None


@dataclass(frozen=True)
class Answer:
    """What an agent answered to an `Ask`, whatever the HTTP library."""

    status_code: int
    retry_after: str | None
    body: bytes
    text: str


# A conversation: yields an Ask (answered with an Answer, or NoAnswer thrown in) or seconds to wait.
Steps = Generator[Ask | float, Answer | None, T]


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


def _json_or_refuse(answer: Answer, what: str) -> dict[str, Any]:
    try:
        body = json.loads(answer.body)
    except ValueError as exc:
        raise AgentRefused(f"{what} answered {answer.status_code} with a body that is not JSON") from exc
    if not isinstance(body, dict):
        raise AgentRefused(f"{what} answered {answer.status_code} with JSON that is not an object")
    return body


@dataclass(frozen=True)
class Talk:
    """What is said to one agent's `serve` endpoint, without the HTTP (see the module's docstring)."""

    base_url: str

    def _url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def request(self, ask: Ask, deadline: Deadline) -> Steps[Answer]:
        """One request, retried on connection errors (with backoff) and on 429/503 (after Retry-After)."""
        failures = 0
        delay = BACKOFF_SECONDS
        while True:
            try:
                answer = yield ask
            except NoAnswer as exc:
                failures += 1
                if failures >= CONNECT_ATTEMPTS or deadline.remaining() <= delay:
                    raise AgentUnreachable(f"{ask.method} {ask.url}: {exc}") from exc
                yield deadline.clip(delay)
                delay *= 2
                continue
            assert answer is not None
            if answer.status_code in (429, 503):
                wait_for = parse_retry_after(answer.retry_after)
                wait_for = delay if wait_for is None else wait_for
                if wait_for >= deadline.remaining():
                    return answer
                yield deadline.clip(wait_for)
                delay = min(delay * 2, POLL_MAX_SECONDS)
                continue
            return answer

    def status(self, deadline: Deadline) -> Steps[dict[str, Any]]:
        """GET /status: the agent's status.json plus `running`."""
        ask = Ask("GET", self._url("/status"), read_timeout=CONNECT_TIMEOUT * 2)
        answer = yield from self.request(ask, deadline)
        return _json_or_refuse(answer, "GET /status")

    def run(
        self, kind: str, deadline: Deadline, longest: float | None = None
    ) -> Steps[tuple[int, dict[str, Any]]]:
        """POST /update or /rebuild asking the agent to hold the answer until done (within limits)."""
        hold = max(1.0, min(longest or LONG_POLL_SECONDS, LONG_POLL_SECONDS, deadline.remaining()))
        ask = Ask("POST", self._url(f"/{kind}"), hold + CONNECT_TIMEOUT * 2, {"wait": f"{hold:g}"})
        answer = yield from self.request(ask, deadline)
        if answer.status_code in (200, 202, 409):
            return answer.status_code, _json_or_refuse(answer, f"POST /{kind}")
        if answer.status_code == 401:
            raise AgentRefused(
                f"the agent refused the token (401) for POST /{kind}: check the server's agent token"
            )
        if answer.status_code in (429, 503):
            raise AgentBusy(f"the agent asked to retry later ({answer.status_code}) until the deadline")
        raise AgentRefused(f"POST /{kind} answered {answer.status_code}: {answer.text[:300]}")

    def run_to_end(
        self, kind: str, deadline: Deadline, watch: StatusWatcher | None = None
    ) -> Steps[dict[str, Any]]:
        """Trigger a run and follow it to its end; return the agent's final status.

        When another run (a pull, another trigger) is going, wait for it to end and
        ask again, so the run that counts includes everything published before the
        call. `watch` is given each status seen while the run goes (its `progress`).
        Raises AgentUnreachable, AgentRefused, AgentBusy or AgentTimeout.
        """
        while True:
            code, body = yield from self.run(kind, deadline, WATCH_HOLD_SECONDS if watch else None)
            if code == 200:
                return body
            if code == 202:
                return (yield from self.follow(deadline, started=True, watch=watch))
            try:
                yield from self.follow(deadline, started=False)
            except AgentTimeout as exc:
                raise AgentBusy(
                    f"the agent was busy with another run for the whole {deadline.seconds:g} s", exc.status
                ) from exc

    def follow(
        self, deadline: Deadline, started: bool, watch: StatusWatcher | None = None
    ) -> Steps[dict[str, Any]]:
        """Poll GET /status until `running` is false; AgentTimeout if the deadline comes first."""
        pause = POLL_MIN_SECONDS
        longest = WATCH_POLL_SECONDS if watch else POLL_MAX_SECONDS
        while True:
            last = yield from self.status(deadline)
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
            yield deadline.clip(pause)
            pause = min(pause * 1.5, longest)


def headers(token: str) -> dict[str, str]:
    """The headers of every request to an agent."""
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


@dataclass
class AgentClient:
    """Talks to one agent's `serve` endpoint with its token, timeouts and retries, over requests."""

    base_url: str
    token: str
    session: requests.Session = field(default_factory=requests.Session)

    def status(self, deadline: Deadline) -> dict[str, Any]:
        """GET /status: the agent's status.json plus `running`."""
        return self._speak(Talk(self.base_url).status(deadline))

    def run(self, kind: str, deadline: Deadline, longest: float | None = None) -> tuple[int, dict[str, Any]]:
        """POST /update or /rebuild asking the agent to hold the answer until done (within limits)."""
        return self._speak(Talk(self.base_url).run(kind, deadline, longest))

    def run_to_end(self, kind: str, deadline: Deadline, watch: StatusWatcher | None = None) -> dict[str, Any]:
        """Trigger a run and follow it to its end (Talk.run_to_end); return the agent's final status."""
        return self._speak(Talk(self.base_url).run_to_end(kind, deadline, watch))

    def _speak(self, steps: Steps[T]) -> T:
        step = next(steps)
        while True:
            try:
                if isinstance(step, Ask):
                    try:
                        answer = self._send(step)
                    except NoAnswer as exc:
                        step = steps.throw(exc)
                        continue
                    step = steps.send(answer)
                else:
                    time.sleep(step)
                    step = steps.send(None)
            except StopIteration as end:
                return end.value

    def _send(self, ask: Ask) -> Answer:
        try:
            response = self.session.request(
                ask.method,
                ask.url,
                headers=headers(self.token),
                timeout=(CONNECT_TIMEOUT, ask.read_timeout),
                params=ask.params,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise NoAnswer(_reason(exc)) from exc
        return Answer(
            response.status_code, response.headers.get("Retry-After"), response.content, response.text
        )
