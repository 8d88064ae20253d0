"""Trigger and wait against small HTTP agents speaking the `serve` contract, with scripted failures.

These agents answer exactly as `dms-update serve` does (GET /status, POST /update and
/rebuild with `?wait=`, 200/202/409/401/429), so every failure path of the control plane
can be provoked on purpose: a hanging run, a busy agent, Retry-After, a wrong token.
"""

from __future__ import annotations

import threading
import time

import pytest

from audit.models import AuditEvent
from audit.services import verify_chain
from dmsupdate.agent import client
from dmsupdate.agent.errors import parse_retry_after
from dmsupdate.state.keys import NANOS
from jobs.models import Job, JobKind, JobStatus
from jobs.services import start_job
from servers.lag import lag_for
from servers.models import RunResult, Server, UpdateRun
from servers.services import record_report
from tests.servers.scripted_agents import BASE, ScriptedAgent, add_server, down_url, run_in_thread

pytestmark = pytest.mark.django_db(transaction=True)


def test_update_all_reports_three_ok_one_unreachable_and_one_failed(file_dataset, agents, operator_user):
    for i in range(3):
        add_server(file_dataset, f"ok-{i}", agents(ops=2).url)
    add_server(file_dataset, "down", down_url())
    failing_key = "updates/2026-11-20/10-00-01-000000000/readings_update.ru"
    add_server(file_dataset, "failing", agents(fail_key=failing_key).url)
    add_server(file_dataset, "off", agents().url, enabled=False)

    job = run_in_thread(
        lambda: start_job(
            JobKind.UPDATE_ALL,
            dataset=file_dataset,
            user=operator_user,
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
    assert runs["ok-0"].requested_by == operator_user

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


def test_hanging_agent_ends_as_timeout_at_the_deadline(file_dataset, agents):
    add_server(file_dataset, "stuck", agents(hang=True).url)
    add_server(file_dataset, "fine", agents().url)

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE_ALL, dataset=file_dataset, params={"timeout": 2}, run_now=True),
        limit=30,
    )

    assert job.result["summary"] == "1 ok, 1 timeout"
    assert "still running after 2 s" in job.result["servers"]["stuck"]["error"]
    assert UpdateRun.objects.get(server__name="stuck").result == RunResult.TIMEOUT


def test_long_run_is_followed_by_polling_status_after_202(file_dataset, agents, monkeypatch):
    monkeypatch.setattr(client, "LONG_POLL_SECONDS", 0.2)
    agent = agents(run_seconds=1.0, ops=5)
    add_server(file_dataset, "slow", agent.url)

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE_ALL, dataset=file_dataset, params={"timeout": 20}, run_now=True),
        limit=60,
    )

    assert job.status == JobStatus.SUCCEEDED
    assert job.result["servers"]["slow"]["ops_applied"] == 5
    assert job.progress == 100
    assert agent.runs == 1


def test_busy_agent_is_waited_for_then_asked_again(file_dataset, agents):
    agent = agents(busy_for=1.0, ops=3)
    server = add_server(file_dataset, "busy", agent.url)

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE, server=server, params={"timeout": 20}, run_now=True), 60
    )

    assert job.result["servers"]["busy"]["result"] == "ok"
    assert [kind for _, kind in agent.posts] == ["update", "update"]
    assert agent.runs == 1


def test_agent_busy_past_the_deadline_ends_busy(file_dataset, agents):
    server = add_server(file_dataset, "busy", agents(busy_for=30).url)

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE, server=server, params={"timeout": 1.5}, run_now=True), 30
    )

    assert job.result["servers"]["busy"]["result"] == "busy"
    assert UpdateRun.objects.get(server=server).result == RunResult.BUSY


def test_retry_after_is_honoured_before_asking_again(file_dataset, agents):
    agent = agents(retry_after_first=1)
    server = add_server(file_dataset, "throttled", agent.url)

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE, server=server, params={"timeout": 20}, run_now=True), 60
    )

    assert job.status == JobStatus.SUCCEEDED
    (first, _), (second, _) = agent.posts
    assert second - first >= 0.9


def test_wrong_agent_token_fails_with_a_clear_error(file_dataset, agents):
    server = add_server(file_dataset, "locked", agents().url, token="not-the-token")

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE, server=server, params={"timeout": 5}, run_now=True), 30
    )

    entry = job.result["servers"]["locked"]
    assert entry["result"] == "failed"
    assert "refused the token (401)" in entry["error"]


def test_concurrency_is_bounded_by_the_setting(file_dataset, agents, settings):
    settings.DMSUPDATE = settings.DMSUPDATE | {"TRIGGER_CONCURRENCY": 2}
    for i in range(5):
        add_server(file_dataset, f"s{i}", agents(run_seconds=0.3).url)

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE_ALL, dataset=file_dataset, params={"timeout": 20}, run_now=True), 60
    )

    assert job.result["summary"] == "5 ok"
    assert ScriptedAgent.max_concurrent == 2


def test_push_rebuild_records_the_rebuilt_state(file_dataset, agents):
    agent = agents(ops=1)
    server = add_server(file_dataset, "fresh", agent.url)

    job = run_in_thread(
        lambda: start_job(JobKind.REBUILD, server=server, params={"timeout": 10}, run_now=True), 30
    )

    assert job.result["servers"]["fresh"]["result"] == "ok"
    assert [kind for _, kind in agent.posts] == ["rebuild"]
    run = UpdateRun.objects.get(server=server)
    assert run.kind == "rebuild" and run.result == RunResult.OK
    server.refresh_from_db()
    assert lag_for(server).state == "ok"


def test_rebuild_of_an_unreachable_agent_does_not_show_rebuilding(file_dataset):
    server = add_server(file_dataset, "gone", down_url())

    run_in_thread(lambda: start_job(JobKind.REBUILD, server=server, params={"timeout": 5}, run_now=True), 30)

    server.refresh_from_db()
    assert server.rebuild_requested_at is None
    assert lag_for(server).state == "unreachable"


def test_pull_agent_shows_rebuilding_until_it_reports_its_rebuild(file_dataset):
    server = add_server(file_dataset, "puller")
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


def test_pull_agent_without_a_report_times_out(file_dataset):
    server = add_server(file_dataset, "silent")

    job = run_in_thread(
        lambda: start_job(JobKind.UPDATE, server=server, params={"timeout": 1}, run_now=True), 30
    )

    entry = job.result["servers"]["silent"]
    assert entry["result"] == "timeout" and "no report from the pull agent" in entry["error"]
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_update_all_without_enabled_servers_succeeds_with_nothing_to_do(file_dataset):
    job = start_job(JobKind.UPDATE_ALL, dataset=file_dataset, run_now=True)

    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"servers": {}, "summary": "no enabled servers"}


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
