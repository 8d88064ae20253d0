"""Small HTTP agents speaking the `serve` contract, with scripted failures, and the helpers of the trigger tests.

These agents answer exactly as `dms-update serve` does (GET /status, POST /update and
/rebuild with `?wait=`, 200/202/409/401/429), so every failure path of the control plane
can be provoked on purpose: a hanging run, a busy agent, Retry-After, a wrong token.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from dmsupdate.state.keys import NANOS, EffectiveTime
from servers.models import Server

BASE = EffectiveTime.parse("2026-11-20", "10-00-00-0").nanos
TOKEN = "agent-secret"


class ScriptedAgent:
    """An agent endpoint whose runs succeed, fail, hang or keep it busy, as the test says."""

    concurrent = 0
    max_concurrent = 0
    lock = threading.Lock()

    def __init__(
        self,
        *,
        ops: int = 2,
        run_seconds: float = 0.0,
        fail_key: str | None = None,
        hang: bool = False,
        busy_for: float = 0.0,
        retry_after_first: int | None = None,
        skipped: list[dict] | None = None,
    ) -> None:
        self.ops = ops
        self.skipped = skipped or []
        self.run_seconds = run_seconds
        self.fail_key = fail_key
        self.hang = hang
        self.retry_after_first = retry_after_first
        self.effective = BASE
        self.runs = 0
        self.posts: list[tuple[float, str]] = []
        self.running = False
        self.done = threading.Event()
        self.stop = threading.Event()
        self.status = {
            "effectiveDate": EffectiveTime(self.effective).path,
            "lastSucceeded": True,
            "lastUpdate": "2026-11-20T10:00:00+00:00",
            "applied": 0,
            "failedKey": None,
            "error": None,
            "late": [],
            "recent": [],
        }
        if busy_for:
            self._start(busy_for, count=False)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _start(self, seconds: float, count: bool = True, kind: str = "update") -> None:
        self.running = True
        self.done.clear()
        threading.Thread(target=self._run, args=(seconds, count, kind), daemon=True).start()

    def _run(self, seconds: float, count: bool, kind: str) -> None:
        cls = ScriptedAgent
        if count:
            with cls.lock:
                cls.concurrent += 1
                cls.max_concurrent = max(cls.max_concurrent, cls.concurrent)
        try:
            if self.hang:
                self.stop.wait()
                return
            self.stop.wait(seconds)
            if not count:
                return
            self.runs += 1
            if self.fail_key:
                self.status |= {
                    "lastSucceeded": False,
                    "applied": 1,
                    "failedKey": self.fail_key,
                    "error": "SPARQL update failed: parse error at line 3",
                }
                self.effective += NANOS
            else:
                self.effective += self.ops * NANOS
                self.status |= {
                    "lastSucceeded": True,
                    "applied": self.ops,
                    "failedKey": None,
                    "error": None,
                    "skipped": self.skipped,
                }
            self.status |= {"effectiveDate": EffectiveTime(self.effective).path}
        finally:
            if count:
                with cls.lock:
                    cls.concurrent -= 1
            self.running = False
            self.done.set()

    def _handler(self):
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if urlparse(self.path).path != "/status":
                    return self._send(404, {"error": "not found"})
                # While a run goes the real agent's status.json carries `progress`.
                going = {"progress": {"done": 1, "total": agent.ops, "bytes": 2048}} if agent.running else {}
                self._send(200, agent.status | going | {"running": agent.running})

            def do_POST(self) -> None:
                url = urlparse(self.path)
                kind = url.path.strip("/")
                agent.posts.append((time.monotonic(), kind))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"error": "unauthorized"})
                if agent.retry_after_first is not None:
                    seconds, agent.retry_after_first = agent.retry_after_first, None
                    return self._send(429, {"error": "slow down"}, {"Retry-After": str(seconds)})
                if agent.running:
                    return self._send(409, {"error": "busy"})
                agent._start(agent.run_seconds, kind=kind)
                wait = float(parse_qs(url.query).get("wait", ["0"])[0])
                if agent.done.wait(wait):
                    return self._send(200, agent.status)
                self._send(202, {"started": True})

        return Handler


def down_url() -> str:
    """An address where nothing listens (the port is free once the probe socket closes)."""
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}"


def add_server(file_dataset, name: str, url: str = "", token: str = TOKEN, **kw) -> Server:
    return Server.objects.create(
        name=name, dataset=file_dataset, agent_url=url, agent_token=token, effective_ns=BASE, **kw
    )


def run_in_thread(fn, limit: float):
    """Run `fn` and fail the test if it has not returned after `limit` seconds (nothing may hang)."""
    box: dict = {}

    def target():
        from django.db import connection

        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            box["error"] = exc
        finally:
            connection.close()

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"still running after {limit} s"
    if "error" in box:
        raise box["error"]
    return box["value"]
