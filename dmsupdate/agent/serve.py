"""`dms-update serve`: the HTTP trigger the control plane's trigger-and-wait job calls.

GET /status → 200 status.json plus `running`; GET /ready → 200 when the store is
ready for queries, else 503, each with the reason (dmsupdate.agent.ready); POST /update,
POST /rebuild and POST /verify (the full fingerprint, by a scan of the store) start a
run in a background thread (409 when one is running; `?wait=SECONDS`
answers 200 with the final status if the run ends in time, else 202). When
`agent_token` is configured every request needs `Authorization: Bearer <token>`
(or `Token <token>`). Errors are JSON `{"error", "detail"}`, never a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dmsupdate.agent.poll import MOVED, HeadPoller
from dmsupdate.agent.ready import newest_update_ns, readiness
from dmsupdate.agent.runner import Runner
from dmsupdate.agent.status import Busy, RunLock
from dmsupdate.state.keys import EffectiveTime, window_start_key
from dmsupdate.state.plan import window_start
from dmsupdate.state.stores import open_store

log = logging.getLogger("dmsupdate.agent")
MAX_WAIT = 3600.0


def parse_bind(bind: str) -> tuple[str, int]:
    """Split `HOST:PORT` (IPv6 hosts in brackets); raise ValueError when malformed."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, not {bind!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class AgentService:
    """One run at a time, started by HTTP requests; shares the CLI's lock file."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._claim = threading.Lock()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.last_status: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        thread = self._thread
        if thread is not None and thread.is_alive():
            return True
        return RunLock.is_held(self.runner.config.lock_path)

    def status(self) -> dict[str, Any]:
        status = self.runner.status()
        status["running"] = self.running
        return status

    def ready(self) -> dict[str, Any]:
        """GET /ready's answer; the root is checked again when what the agent saw of it is too old."""
        return readiness(self.runner.config, self.runner.status(), self.newest_in_root)

    def newest_in_root(self) -> int | None:
        """The newest update in the root: the control plane's head if it answers, else a listing of the window."""
        config = self.runner.config
        if config.controlplane is not None and self.runner.dataset:
            answer = HeadPoller(config.controlplane).poll(self.runner.dataset)
            if answer.outcome == MOVED:
                return answer.newest_ns
        status = self.runner.status()
        start = None
        if isinstance(status.get("effectiveDate"), str):
            effective = EffectiveTime.parse_text(status["effectiveDate"])
            start = window_start_key("updates", window_start(effective, config.window_hours))
        store = open_store(config.s3root, config.s3endpoint)
        return newest_update_ns(info.key for info in store.list("updates/", start_after=start))

    def start(self, kind: str) -> threading.Event:
        """Start a run in the background; raise Busy when one is running here or elsewhere."""
        if not self._claim.acquire(blocking=False):
            raise Busy("a run is already in progress")
        try:
            if self._thread is not None and self._thread.is_alive():
                raise Busy("a run is already in progress")
            lock = self.runner.lock(timeout=0)  # held by another process (cron, CLI): busy
        except BaseException:
            self._claim.release()
            raise
        done = threading.Event()

        def run() -> None:
            try:
                if kind == "verify":
                    self.last_status = self.runner.verify_locked()
                else:
                    self.last_status = self.runner.run_locked(kind)
            except Exception:  # the thread must never die silently
                log.exception("%s run crashed", kind)
            finally:
                lock.release()
                done.set()

        self._thread = threading.Thread(target=run, name=f"dms-update-{kind}", daemon=True)
        self._thread.start()
        self._claim.release()
        return done


class Handler(BaseHTTPRequestHandler):
    """Routes the three endpoints; everything else is a JSON 404."""

    service: AgentService
    server_version = "dms-update"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (malformed request line, headers, version) as JSON too."""
        self.close_connection = True
        try:
            reason = HTTPStatus(code).phrase
        except ValueError:
            reason = "error"
        self._send(code, {"error": reason.lower().replace(" ", "_"), "detail": message or reason})

    def _error(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": code, "detail": detail}, headers)

    def _authorised(self) -> bool:
        token = self.service.runner.config.agent_token
        if not token:
            return True
        scheme, _, given = (self.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() in ("bearer", "token") and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return True
        self._error(
            HTTPStatus.UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <agent_token>",
            {"WWW-Authenticate": 'Bearer realm="dms-update"'},
        )
        return False

    def _route(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            path = url.path.rstrip("/") or "/"
            routes = {
                "/status": ("GET",),
                "/ready": ("GET",),
                "/update": ("POST",),
                "/rebuild": ("POST",),
                "/verify": ("POST",),
            }
            if path not in routes:
                self._error(HTTPStatus.NOT_FOUND, "not_found", f"no such endpoint: {url.path}")
                return
            if method not in routes[path]:
                self._error(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    f"{path} accepts {', '.join(routes[path])}",
                    {"Allow": ", ".join(routes[path])},
                )
                return
            if not self._authorised():
                return
            if path == "/status":
                self._send(HTTPStatus.OK, self.service.status())
                return
            if path == "/ready":
                answer = self.service.ready()
                self._send(HTTPStatus.OK if answer["ready"] else HTTPStatus.SERVICE_UNAVAILABLE, answer)
                return
            self._trigger(path.lstrip("/"), parse_qs(url.query))
        except Exception:
            log.exception("request %s %s failed", method, self.path)
            self._error(
                HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "the agent could not answer; see its log"
            )

    def _trigger(self, kind: str, query: dict[str, list[str]]) -> None:
        wait: float | None = None
        if "wait" in query:
            try:
                wait = float(query["wait"][-1])
                if not 0 <= wait <= MAX_WAIT:
                    raise ValueError
            except ValueError:
                self._error(
                    HTTPStatus.BAD_REQUEST,
                    "bad_request",
                    f"wait must be a number of seconds from 0 to {MAX_WAIT:g}",
                )
                return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 16))
        try:
            done = self.service.start(kind)
        except Busy as exc:
            self._error(HTTPStatus.CONFLICT, "busy", str(exc))
            return
        if wait is not None and done.wait(wait):
            status = self.service.last_status or self.service.runner.status()
            status = dict(status, running=False)
            self._send(HTTPStatus.OK, status)
            return
        self._send(HTTPStatus.ACCEPTED, {"started": True})

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


def make_server(runner: Runner, host: str, port: int, update_now: bool = False) -> ThreadingHTTPServer:
    """An HTTP server bound to host:port serving the agent endpoints (not yet serving).

    `update_now`: start one update in the background at once (config `update_on_start`).
    """
    service = AgentService(runner)
    handler = type("AgentHandler", (Handler,), {"service": service})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    if update_now:
        try:
            service.start("update")
        except Busy as exc:
            log.info("no update at start: %s", exc)
    return server


def serve_forever(runner: Runner, host: str, port: int) -> None:
    """Serve until interrupted (after starting one update, unless `update_on_start` is off)."""
    server = make_server(runner, host, port, update_now=runner.config.update_on_start)
    log.info("serving on http://%s:%d", host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
