"""Trigger and wait against small HTTP agents speaking the `serve` contract, with scripted failures.

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

import pytest
from django.contrib.auth import get_user_model

from audit.models import AuditEvent
from audit.services import verify_chain
from dmsupdate.state.keys import NANOS, EffectiveTime
from jobs.models import Job, JobKind, JobStatus
from jobs.services import start_job
from publications.models import Dataset
from servers import fleet
from servers.models import RunResult, Server, UpdateRun
from servers.services import lag_for, record_report

pytestmark = pytest.mark.django_db(transaction=True)

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
    ) -> None:
        self.ops = ops
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
                self.status |= {"lastSucceeded": True, "applied": self.ops, "failedKey": None, "error": None}
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
                self._send(200, agent.status | {"running": agent.running})

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


@pytest.fixture
def agents():
    """Start scripted agents on demand; all are stopped after the test."""
    started: list[ScriptedAgent] = []
    ScriptedAgent.concurrent = ScriptedAgent.max_concurrent = 0

    def make(**kw) -> ScriptedAgent:
        agent = ScriptedAgent(**kw)
        started.append(agent)
        return agent

    yield make
    for agent in started:
        agent.close()


@pytest.fixture
def dataset(file_root):
    return Dataset.objects.create(name="flood", s3root=file_root[0])


@pytest.fixture
def operator():
    return get_user_model().objects.create_user("olivia", password="x")


def down_url() -> str:
    """An address where nothing listens (the port is free once the probe socket closes)."""
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}"


def add_server(dataset, name: str, url: str = "", token: str = TOKEN, **kw) -> Server:
    return Server.objects.create(
        name=name, dataset=dataset, agent_url=url, agent_token=token, effective_ns=BASE, **kw
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


def test_update_all_reports_three_ok_one_unreachable_and_one_failed(dataset, agents, operator):
    for i in range(3):
        add_server(dataset, f"ok-{i}", agents(ops=2).url)
    add_server(dataset, "down", down_url())
    failing_key = "updates/2026-11-20/10-00-01-000000000/readings_update.ru"
    add_server(dataset, "failing", agents(fail_key=failing_key).url)
    add_server(dataset, "off", agents().url, enabled=False)

    job = run_in_thread(
        lambda: start_job(
            JobKind.UPDATE_ALL,
            dataset=dataset,
            user=operator,
            actor="olivia",
            params={"timeout": 10},
            run_now=True,
        ),
        limit=60,
    )

    assert job.status == JobStatus.FAILED
    assert job.result["summary"] == "3 ok, 1 unreachable, 1 failed"
    assert job.error == "3 ok, 1 unreachable, 1 failed"
    servers = job.result["servers"]
    assert set(servers) == {"ok-0", "ok-1", "ok-2", "down", "failing"}
    for i in range(3):
        entry = servers[f"ok-{i}"]
        assert entry["result"] == "ok" and entry["ops_applied"] == 2
        assert entry["effective_before"] == "2026-11-20/10-00-00-000000000"
        assert entry["effective_after"] == "2026-11-20/10-00-02-000000000"
    assert servers["failing"]["failed_key"] == failing_key
    assert "parse error at line 3" in servers["failing"]["error"]
    assert servers["down"]["result"] == "unreachable" and "connection refused" in servers["down"]["error"]

    runs = {r.server.name: r for r in UpdateRun.objects.filter(job=job).select_related("server")}
    assert {n: r.result for n, r in runs.items()} == {
        "ok-0": RunResult.OK,
        "ok-1": RunResult.OK,
        "ok-2": RunResult.OK,
        "down": RunResult.UNREACHABLE,
        "failing": RunResult.FAILED,
    }
    assert runs["failing"].failed_key == failing_key and runs["failing"].finished_at is not None
    assert runs["ok-0"].effective_after_ns == BASE + 2 * NANOS and runs["ok-0"].ops_applied == 2
    assert runs["ok-0"].requested_by == operator

    assert lag_for(Server.objects.get(name="down")).state == "unreachable"
    assert lag_for(Server.objects.get(name="failing")).state == "failing"
    assert Server.objects.get(name="ok-1").effective_ns == BASE + 2 * NANOS

    failed_row = AuditEvent.objects.get(action="server.update.failed", target="failing")
    assert failed_row.details["failed_key"] == failing_key and failed_row.actor == "olivia"
    assert AuditEvent.objects.filter(action="server.update.unreachable", target="down").exists()
    ok_row = AuditEvent.objects.get(action="server.update.ok", target="flood")
    assert ok_row.details["servers"] == {f"ok-{i}": "2026-11-20/10-00-02-000000000" for i in range(3)}
    end = AuditEvent.objects.get(action="job.update_all.failed")
    assert end.details["summary"] == "3 ok, 1 unreachable, 1 failed"
    assert verify_chain().ok


def test_hanging_agent_ends_as_timeout_at_the_deadline(dataset, agents):
    add_server(dataset, "stuck", agents(hang=True).url)
    add_server(dataset, "fine", agents().url)

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE_ALL, dataset=dataset, params={"timeout": 2}, run_now=True), limit=30
    )

    assert job.result["summary"] == "1 ok, 1 timeout"
    assert "still running after 2 s" in job.result["servers"]["stuck"]["error"]
    assert UpdateRun.objects.get(server__name="stuck").result == RunResult.TIMEOUT


def test_long_run_is_followed_by_polling_status_after_202(dataset, agents, monkeypatch):
    monkeypatch.setattr(fleet, "LONG_POLL_SECONDS", 0.2)
    agent = agents(run_seconds=1.0, ops=5)
    add_server(dataset, "slow", agent.url)

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE_ALL, dataset=dataset, params={"timeout": 20}, run_now=True), limit=60
    )

    assert job.status == JobStatus.SUCCEEDED
    assert job.result["servers"]["slow"]["ops_applied"] == 5
    assert job.progress == 100
    assert agent.runs == 1


def test_busy_agent_is_waited_for_then_asked_again(dataset, agents):
    agent = agents(busy_for=1.0, ops=3)
    server = add_server(dataset, "busy", agent.url)

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE, server=server, params={"timeout": 20}, run_now=True), 60
    )

    assert job.result["servers"]["busy"]["result"] == "ok"
    assert [kind for _, kind in agent.posts] == ["update", "update"]
    assert agent.runs == 1


def test_agent_busy_past_the_deadline_ends_busy(dataset, agents):
    server = add_server(dataset, "busy", agents(busy_for=30).url)

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE, server=server, params={"timeout": 1.5}, run_now=True), 30
    )

    assert job.result["servers"]["busy"]["result"] == "busy"
    assert UpdateRun.objects.get(server=server).result == RunResult.BUSY


def test_retry_after_is_honoured_before_asking_again(dataset, agents):
    agent = agents(retry_after_first=1)
    server = add_server(dataset, "throttled", agent.url)

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE, server=server, params={"timeout": 20}, run_now=True), 60
    )

    assert job.status == JobStatus.SUCCEEDED
    (first, _), (second, _) = agent.posts
    assert second - first >= 0.9


def test_wrong_agent_token_fails_with_a_clear_error(dataset, agents):
    server = add_server(dataset, "locked", agents().url, token="not-the-token")

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE, server=server, params={"timeout": 5}, run_now=True), 30
    )

    entry = job.result["servers"]["locked"]
    assert entry["result"] == "failed"
    assert "refused the token (401)" in entry["error"]


def test_concurrency_is_bounded_by_the_setting(dataset, agents, settings):
    settings.DMSUPDATE = settings.DMSUPDATE | {"TRIGGER_CONCURRENCY": 2}
    for i in range(5):
        add_server(dataset, f"s{i}", agents(run_seconds=0.3).url)

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE_ALL, dataset=dataset, params={"timeout": 20}, run_now=True), 60
    )

    assert job.result["summary"] == "5 ok"
    assert ScriptedAgent.max_concurrent == 2


def test_push_rebuild_records_the_rebuilt_state(dataset, agents):
    agent = agents(ops=1)
    server = add_server(dataset, "fresh", agent.url)

    job = run_in_thread(
        lambda: start_job(JobKind.REBUILD, server=server, params={"timeout": 10}, run_now=True), 30
    )

    assert job.result["servers"]["fresh"]["result"] == "ok"
    assert [kind for _, kind in agent.posts] == ["rebuild"]
    run = UpdateRun.objects.get(server=server)
    assert run.kind == "rebuild" and run.result == RunResult.OK
    server.refresh_from_db()
    assert lag_for(server).state == "ok"


def test_rebuild_of_an_unreachable_agent_does_not_show_rebuilding(dataset):
    server = add_server(dataset, "gone", down_url())

    run_in_thread(lambda: start_job(JobKind.REBUILD, server=server, params={"timeout": 5}, run_now=True), 30)

    server.refresh_from_db()
    assert server.rebuild_requested_at is None
    assert lag_for(server).state == "unreachable"


def test_pull_agent_shows_rebuilding_until_it_reports_its_rebuild(dataset):
    server = add_server(dataset, "puller")
    seen: dict = {}

    def report_later():
        from django.db import connection

        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                row = Server.objects.get(pk=server.pk)
                if row.rebuild_requested_at:
                    seen["state"] = lag_for(row).state
                    break
                time.sleep(0.05)
            record_report(
                row,
                {
                    "effectiveDate": "2026-11-20/10-00-09-000000000",
                    "lastSucceeded": True,
                    "applied": 9,
                    "lastRun": "rebuild",
                },
            )
        finally:
            connection.close()

    reporter = threading.Thread(target=report_later)
    reporter.start()
    job = run_in_thread(
        lambda: start_job(JobKind.REBUILD, server=server, params={"timeout": 15}, run_now=True), 30
    )
    reporter.join()

    assert seen["state"] == "rebuilding"
    entry = job.result["servers"]["puller"]
    assert entry["result"] == "ok" and entry["ops_applied"] == 9
    assert "answer to its report" in entry["note"]
    assert entry["effective_after"] == "2026-11-20/10-00-09-000000000"
    server.refresh_from_db()
    assert lag_for(server).state == "ok"


def test_pull_agent_without_a_report_times_out(dataset):
    server = add_server(dataset, "silent")

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE, server=server, params={"timeout": 1}, run_now=True), 30
    )

    entry = job.result["servers"]["silent"]
    assert entry["result"] == "timeout" and "no report from the pull agent" in entry["error"]
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_update_all_without_enabled_servers_succeeds_with_nothing_to_do(dataset):
    job = start_job(JobKind.UPDATE_ALL, dataset=dataset, run_now=True)

    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"servers": {}, "summary": "no enabled servers"}


def test_retry_after_accepts_seconds_and_http_dates():
    import requests

    response = requests.Response()
    response.headers["Retry-After"] = "7"
    assert fleet.retry_after_seconds(response, 1.0) == 7.0
    response.headers["Retry-After"] = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert fleet.retry_after_seconds(response, 1.0) == 0.0
    response.headers["Retry-After"] = "soon"
    assert fleet.retry_after_seconds(response, 1.5) == 1.5
