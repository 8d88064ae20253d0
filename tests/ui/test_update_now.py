"""Update now, in headless Chromium, against a real `dms-update serve` agent and the real trigger job."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from dmsupdate.state.keys import EffectiveTime, format_key
from jobs.models import Job, JobStatus
from publications.models import Dataset, ObjectKind, StateObject
from servers.models import Server
from tests.conftest import free_port
from tests.factories import register_update
from tests.ui.browser import NANOS, ROOT, log_in, make_user, shoot

pytestmark = [pytest.mark.browser]


class JobRunner(threading.Thread):
    """Runs queued jobs in this process, as a django-q2 worker would (no qcluster runs in tests)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        from jobs.services import run_job

        try:
            while not self.stopping.is_set():
                close_old_connections()
                for pk in Job.objects.filter(status=JobStatus.QUEUED).values_list("pk", flat=True):
                    run_job(pk)
                self.stopping.wait(0.2)
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


def agent(config: Path, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "dmsupdate.agent", "--config", str(config), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def wait_for_agent(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until the agent's serve answers GET /status (or fail with its stderr if it exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the agent exited: {process.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/status", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers (perhaps asking for its token): it is serving
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the agent did not answer at {url} within {timeout}s")


def write_update(root: Path, eff: EffectiveTime, graph: str, subject: str) -> str:
    key = format_key(eff, "readings", "add", arg=graph, format="ttl")
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<http://example.org/{subject}> <http://example.org/p> "{subject}" .\n')
    return key


def test_update_now_brings_a_lagging_server_to_zero_without_reloading(
    browser_page, live_server, transactional_db, tmp_path
):
    from accounts.models import ApiToken

    operator_user = make_user("olivia", "operator")
    state = tmp_path / "state"
    state.mkdir()
    ui_dataset = Dataset.objects.create(name="flood", s3root=f"file://{state}")
    start = EffectiveTime.from_datetime(timezone.now() - timedelta(minutes=30))
    # The base: a dump, then one update the server applies before the test.
    dump = format_key(start, "base", "dump")
    (state / dump).parent.mkdir(parents=True)
    (state / dump).write_bytes(
        gzip.compress(b'<http://example.org/s> <http://example.org/p> "base" <http://example.org/g> .\n')
    )
    now = timezone.now()
    StateObject.objects.create(
        dataset=ui_dataset,
        key=dump,
        kind=ObjectKind.IMAGE,
        op="dump",
        label="base",
        effective_ns=start.nanos,
        effective_at=start.to_datetime(),
        format="nq.gz",
        first_seen=now,
        last_seen=now,
    )
    times = [EffectiveTime(start.nanos + (i + 1) * 300 * NANOS) for i in range(3)]
    write_update(state, times[0], "http://example.org/graph/0", "s0")
    register_update(ui_dataset, times[0], "http://example.org/graph/0")

    server = Server.objects.create(
        name="fuseki-live", dataset=ui_dataset, agent_token="agent-secret-for-tests"
    )
    _, report_key = ApiToken.issue(operator_user, "agent", name="fuseki-live agent", server=server)
    port = free_port()
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "s3root": f"file://{state}",
                "dblocation": str(tmp_path / "db"),
                "dbname": "store",
                "logArea": str(tmp_path / "log"),
                "bindir": str(tmp_path / "bin"),
                "agent_token": "agent-secret-for-tests",
                "update_on_start": False,  # the test presses Update itself
                "controlplane": {"url": live_server.url, "server": "fuseki-live", "token": report_key},
            }
        )
    )
    # Only the first update is published when the agent first runs: it applies it and reports.
    first = agent(config, "update")
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()[-2000:]
    for i, t in enumerate(times[1:], start=1):
        write_update(state, t, f"http://example.org/graph/{i}", f"s{i}")
        register_update(ui_dataset, t, f"http://example.org/graph/{i}")
    server.refresh_from_db()
    assert server.effective_ns == times[0].nanos

    serving = agent(config, "serve", "--bind", f"127.0.0.1:{port}")
    runner = JobRunner()
    try:
        wait_for_agent(f"http://127.0.0.1:{port}", serving)
        Server.objects.filter(pk=server.pk).update(agent_url=f"http://127.0.0.1:{port}")
        runner.start()
        page = browser_page
        log_in(page, live_server, "olivia")
        assert page.locator("#server-fuseki-live .lag").inner_text() == "2 updates, 10 min behind"
        page.goto(f"{live_server.url}/servers/fuseki-live/")
        page.evaluate("window.__notReloaded = true")
        page.get_by_role("button", name="Update now").click()
        page.wait_for_selector("#job-panel .job")
        shoot(page, "update-running")
        page.wait_for_function(
            "document.querySelector('#server-status .lag').innerText === 'up to date'", timeout=60_000
        )
        assert page.evaluate("window.__notReloaded") is True
        assert page.locator("#server-status .pending").inner_text() == "0"
        assert page.locator("#job-panel .badge").inner_text() == "succeeded"
        # The runs table refreshed too: the run the job recorded, with the two ops it applied.
        page.wait_for_selector("#server-history table.runs")
        assert page.locator("#server-history table.runs td.num").first.inner_text() == "2"
        shoot(page, "update-done")
        page.goto(f"{live_server.url}/")
        assert page.locator("#server-fuseki-live .badge").inner_text() == "ok"
    finally:
        runner.stop()
        serving.terminate()
        try:
            serving.wait(10)
        except subprocess.TimeoutExpired:
            serving.kill()
            serving.wait(5)
