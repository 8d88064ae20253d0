"""A fleet job calls its push agents from one event loop (servers.fleet): the same outcomes as one call.

The one-server paths of test_trigger.py go through AgentClient (requests); here the
same refusals, waits and Retry-After come through the fleet's client, in one
update-all job, and the calls start with the servers whose last run took longest.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from jobs.models import JobKind
from jobs.services import start_job
from servers.models import RunResult, UpdateRun
from servers.runs import longest_first
from tests.servers.scripted_agents import add_server, down_url, run_in_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def not_json():
    """An agent endpoint that answers 200 with a body that is not JSON."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            data = b"<html>gateway</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def update_all(dataset, timeout: float = 20):
    return run_in_thread(
        lambda: start_job(JobKind.UPDATE_ALL, dataset=dataset, params={"timeout": timeout}, run_now=True),
        limit=60,
    )


def test_fleet_job_gives_each_agent_the_outcome_a_single_call_gives(file_dataset, agents, not_json):
    throttled = agents(retry_after_first=1, ops=4)
    busy = agents(busy_for=1.0, ops=3)
    add_server(file_dataset, "throttled", throttled.url)
    add_server(file_dataset, "busy", busy.url)
    add_server(file_dataset, "locked", agents().url, token="not-the-token")
    add_server(file_dataset, "garbled", not_json)
    add_server(file_dataset, "down", down_url())

    job = update_all(file_dataset)

    assert job.result["summary"] == "2 ok, 1 unreachable, 2 failed"
    servers = job.result["servers"]
    assert servers["throttled"]["result"] == "ok" and servers["throttled"]["ops_applied"] == 4
    (first, _), (second, _) = throttled.posts
    assert second - first >= 0.9
    assert servers["busy"]["result"] == "ok" and [kind for _, kind in busy.posts] == ["update", "update"]
    assert "refused the token (401)" in servers["locked"]["error"]
    assert servers["garbled"]["error"] == "POST /update answered 200 with a body that is not JSON"
    assert servers["down"]["result"] == "unreachable"
    assert servers["down"]["error"].endswith(": connection refused")
    runs = {r.server.name: r.result for r in UpdateRun.objects.filter(job=job).select_related("server")}
    assert runs == {
        "throttled": RunResult.OK,
        "busy": RunResult.OK,
        "locked": RunResult.FAILED,
        "garbled": RunResult.FAILED,
        "down": RunResult.UNREACHABLE,
    }
    assert AuditEvent.objects.get(action="server.update.failed", target="garbled").details["job"] == job.pk


def test_fleet_job_ends_a_hanging_agent_at_its_deadline(file_dataset, agents):
    add_server(file_dataset, "stuck", agents(hang=True).url)
    add_server(file_dataset, "fine", agents().url)

    job = update_all(file_dataset, timeout=2)

    assert job.result["summary"] == "1 ok, 1 timeout"
    assert job.result["servers"]["stuck"]["error"] == "the agent was still running after 2 s"


def test_servers_whose_last_run_took_longest_are_called_first(file_dataset, settings, agents):
    settings.DMSUPDATE = settings.DMSUPDATE | {"TRIGGER_CONCURRENCY": 1}
    quick, slow = agents(), agents(run_seconds=0.5)
    add_server(file_dataset, "a-quick", quick.url)
    add_server(file_dataset, "b-slow", slow.url)
    update_all(file_dataset)
    assert quick.posts[0][0] < slow.posts[0][0]  # no history yet: by name

    update_all(file_dataset)

    assert slow.posts[1][0] < quick.posts[1][0]


def test_longest_first_puts_servers_never_run_first_then_the_longest_last_run(file_dataset):
    never, short, long = (add_server(file_dataset, name) for name in ("never", "short", "long"))
    start = timezone.now() - timedelta(hours=1)
    for server, seconds in ((short, 1), (long, 9), (short, 30)):
        UpdateRun.objects.create(
            server=server, kind="update", started_at=start, finished_at=start + timedelta(seconds=seconds)
        )
        start += timedelta(minutes=1)  # the last run of `short` (30 s) is the one that counts

    assert [s.name for s in longest_first([long, never, short])] == ["never", "short", "long"]
    assert longest_first([long]) == [long]
