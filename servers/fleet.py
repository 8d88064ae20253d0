"""Many agents' `serve` endpoints called at once from one event loop (aiohttp): the control plane's fleet jobs.

A thread per call costs a thread start, and a thousand threads fight over the
interpreter: starting 1,000 calls that way took seconds. Here one event loop on
its own thread holds every call; each call's end comes back as a
concurrent.futures.Future, so the job's thread waits on it as on any other.
The calls speak the same `Talk` as AgentClient (dmsupdate.agent.client): the
same retries, Retry-After, deadlines, exceptions and messages, the same token
header, timeouts, certificates (requests' CA bundle, or REQUESTS_CA_BUNDLE /
CURL_CA_BUNDLE) and proxies from the environment. It lives in the control plane
(aiohttp is in the server extras, not the agent's).
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.request import getproxies

import aiohttp
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_environ_proxies, select_proxy

from dmsupdate.agent.client import (
    CONNECT_TIMEOUT,
    Answer,
    Ask,
    CallFailed,
    Deadline,
    NoAnswer,
    StatusWatcher,
    Steps,
    Talk,
    headers,
)

T = TypeVar("T")
# Requests being opened (connected and sent) at once. Without a bound the loop would
# prepare all 1,000 before sending the first; with it the first calls (the longest
# runs, see servers.runs.longest_first) are on their way while the others are prepared.
OPENING = 32


@dataclass(frozen=True)
class Reply:
    """How one call ended: the agent's final status or why not, when, and how long the call took."""

    status: dict[str, Any] | None
    failure: CallFailed | None
    finished: datetime
    duration: float


def _reason(exc: BaseException) -> str:
    """The same short reasons as AgentClient gives for requests' exceptions."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connection timed out"
    if isinstance(exc, TimeoutError):
        return "no answer before the read timeout"
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, ConnectionRefusedError):
        return "connection refused"
    return (str(exc) or exc.__class__.__name__)[:300]


class _Opening:
    """A request's slot among those being opened, given back once its headers are sent (or it failed)."""

    def __init__(self, slots: asyncio.Semaphore, then: Callable[[], None] | None = None) -> None:
        self.slots = slots
        self.held = False
        self.then = then  # called once, the first time the slot is given back

    async def __aenter__(self) -> _Opening:
        if not self.held:
            await self.slots.acquire()
            self.held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.give_back()

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self.slots.release()
            then, self.then = self.then, None
            if then is not None:
                then()


async def _sent(session: object, context: Any, params: object) -> None:
    context.trace_request_ctx.give_back()


def _certificates() -> ssl.SSLContext:
    """Agents' certificates checked against what requests would use (its bundle, or the environment's)."""
    return _context(
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or DEFAULT_CA_BUNDLE_PATH
    )


@functools.cache
def _context(bundle: str) -> ssl.SSLContext:
    """One context per bundle and process: loading a bundle takes tens of milliseconds, before the first call."""
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


class Fleet:
    """Calls to agents from one event loop on its own thread, at most `concurrency` at a time.

    with Fleet(16) as fleet:
        future = fleet.run_to_end(url, token, "update", 900, answer)
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = max(1, concurrency)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="agent-fleet", daemon=True)

    def __enter__(self) -> Fleet:
        self._thread.start()
        self._session, self._slots, self._opening = asyncio.run_coroutine_threadsafe(
            self._open(), self._loop
        ).result()
        # Read once: looking them up per agent costs as much as the call itself.
        self._proxied = bool(getproxies())
        self._unsent = 0  # calls that have their turn but not yet sent their first request (loop thread)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _open(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore, asyncio.Semaphore]:
        # A connection per request, closed after it (no idle connection an agent may drop meanwhile);
        # no cookies kept between agents; proxies are looked up per agent (_speak), not per request.
        connector = aiohttp.TCPConnector(limit=0, force_close=True, ssl=_certificates())
        sent = aiohttp.TraceConfig()
        sent.on_request_headers_sent.append(_sent)
        session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trace_configs=[sent]
        )
        return session, asyncio.Semaphore(self.concurrency), asyncio.Semaphore(OPENING)

    async def _close(self) -> None:
        """Calls still going (the caller gave up on them) are cancelled; then the connections are closed."""
        calls = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await self._session.close()

    def sending(self) -> bool:
        """Whether a call that has its turn is still to send its first request.

        Meanwhile the caller had better leave the interpreter to the loop (a fleet
        job records no answers then): the first requests are what the job waits on.
        """
        return self._unsent > 0

    def _first_sent(self) -> None:
        self._unsent -= 1

    def run_to_end(
        self,
        base_url: str,
        token: str,
        kind: str,
        timeout: float,
        answer: Callable[[Reply], T],
        watch: StatusWatcher | None = None,
    ) -> Future[T]:
        """Trigger a run and follow it to its end (Talk.run_to_end); the future holds `answer(reply)`.

        The call's deadline (`timeout` seconds) starts when its turn comes. `answer`
        and `watch` run on the loop's thread.
        """
        call = self._run_to_end(base_url, token, kind, timeout, answer, watch)
        return asyncio.run_coroutine_threadsafe(call, self._loop)

    async def _run_to_end(
        self,
        base_url: str,
        token: str,
        kind: str,
        timeout: float,
        answer: Callable[[Reply], T],
        watch: StatusWatcher | None,
    ) -> T:
        async with self._slots:
            self._unsent += 1
            async with _Opening(self._opening, then=self._first_sent) as turn:
                # The call's clock and deadline start when its first request may be opened.
                clock = time.monotonic()
                deadline = Deadline(timeout)
                status, failure = None, None
                try:
                    talk = Talk(base_url).run_to_end(kind, deadline, watch)
                    status = await self._speak(talk, token, turn)
                except CallFailed as exc:
                    failure = exc
                return answer(Reply(status, failure, datetime.now(UTC), time.monotonic() - clock))

    async def _speak(self, steps: Steps[T], token: str, turn: _Opening | None) -> T:
        proxy: str | None = None
        step = next(steps)
        if self._proxied and isinstance(step, Ask):
            proxy = select_proxy(step.url, get_environ_proxies(step.url))
        while True:
            try:
                if isinstance(step, Ask):
                    try:
                        replied = await self._send(step, token, proxy, turn)
                        turn = None
                    except NoAnswer as exc:
                        step = steps.throw(exc)
                        continue
                    step = steps.send(replied)
                else:
                    await asyncio.sleep(step)
                    step = steps.send(None)
            except StopIteration as end:
                return end.value

    async def _send(self, ask: Ask, token: str, proxy: str | None, turn: _Opening | None) -> Answer:
        limits = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=ask.read_timeout)
        try:
            async with (
                turn or _Opening(self._opening) as opening,
                self._session.request(
                    ask.method,
                    ask.url,
                    params=ask.params,
                    headers=headers(token),
                    timeout=limits,
                    proxy=proxy,
                    trace_request_ctx=opening,
                ) as response,
            ):
                body = await response.read()
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            raise NoAnswer(_reason(exc)) from exc
        text = body.decode("utf-8", errors="replace")
        return Answer(response.status, response.headers.get("Retry-After"), body, text)
