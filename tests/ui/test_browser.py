"""The dashboard in headless Chromium (Debian's /usr/bin/chromium driven by Playwright) against a live server.

Screenshots of every page go to tests/artefacts/ (ignored by git) for review.
"""

from __future__ import annotations

import gzip
import importlib.util
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
from django.contrib.auth.models import Group, User
from django.db import close_old_connections, connection
from django.urls import Resolver404, resolve
from django.utils import timezone

from audit.services import record
from dmsupdate.state.keys import EffectiveTime, format_key
from jobs.models import Job, JobKind, JobStatus
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from servers.models import RunResult, Server, StatusReport, UpdateRun
from tests.conftest import free_port
from tests.factories import register_update

pytestmark = [pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / "tests" / "artefacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"
NANOS = 1_000_000_000


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for these tests (the Debian package; never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests
    # make between browser steps are plain synchronous code, so allow them here only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_page(chromium):
    """A fresh browser context (no cookies) with a laptop-sized window."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def shoot(page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def make_user(username: str, role: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


@pytest.fixture
def showcase(transactional_db, tmp_path):
    """A fleet in every state, publications, odd objects, audit events and jobs: something to look at."""
    now = timezone.now()
    flood = Dataset.objects.create(name="flood-monitoring", s3root=f"file://{tmp_path}/flood")
    bathing = Dataset.objects.create(name="bathing-water", s3root=f"file://{tmp_path}/bathing")
    Dataset.objects.create(name="hydrology", s3root=f"file://{tmp_path}/hydrology")
    start = EffectiveTime.from_datetime(now - timedelta(minutes=40))
    updates = [
        register_update(
            flood,
            EffectiveTime(start.nanos + i * 180 * NANOS),
            f"http://environment.data.gov.uk/flood-monitoring/graph/readings-{i}",
        )
        for i in range(12)
    ]
    for i in range(3):
        register_update(bathing, EffectiveTime(start.nanos + i * 600 * NANOS), f"http://example.org/bw/{i}")

    def server(name, dataset, eff_index, **fields):
        eff = updates[eff_index].effective_ns if eff_index is not None else None
        s = Server.objects.create(
            name=name,
            dataset=dataset,
            effective_ns=eff,
            last_report_at=fields.pop("last_report_at", now - timedelta(minutes=2)),
            last_succeeded=fields.pop("last_succeeded", True),
            agent_url=fields.pop("agent_url", "http://10.0.0.5:8765"),
            **fields,
        )
        for h in range(24, 0, -2):
            lag = max(0.0, (h % 7) * 300.0 - (0 if eff_index == 11 else -600))
            StatusReport.objects.create(
                server=s,
                received_at=now - timedelta(hours=h),
                effective_ns=eff,
                lag_seconds=lag,
                pending_updates=int(lag // 180),
                applied=2 if lag else 0,
                succeeded=True,
            )
        return s

    server("fuseki-a", flood, 11)
    lagging = server("fuseki-b", flood, 7)
    server(
        "fuseki-c",
        flood,
        4,
        last_succeeded=False,
        failed_key=updates[5].key,
        last_error="HTTP 400 from the store: Bad Request (invalid Turtle at line 3)",
    )
    server(
        "fuseki-d",
        flood,
        9,
        unreachable_since=now - timedelta(minutes=12),
        unreachable_error="connection refused",
    )
    server("fuseki-e", flood, 11, rebuild_requested_at=now - timedelta(minutes=1))
    server("fuseki-old", flood, 2, enabled=False)
    Server.objects.create(name="bw-1", dataset=bathing)
    for i, result in enumerate([RunResult.OK, RunResult.FAILED, RunResult.OK]):
        UpdateRun.objects.create(
            server=lagging,
            started_at=now - timedelta(hours=3 - i),
            finished_at=now - timedelta(hours=3 - i) + timedelta(seconds=40 + 30 * i),
            result=result,
            ops_applied=3 + i,
            failed_key=updates[5].key if result == RunResult.FAILED else "",
            error="timeout talking to the store" if result == RunResult.FAILED else "",
            trigger="publication" if i else "manual",
        )
    StateObject.objects.create(
        dataset=flood,
        key="updates/2026-11-20/readings.ttl",
        kind=ObjectKind.OTHER,
        state=ObjectState.INVALID,
        error="not a state key: no time folder",
        first_seen=now,
        last_seen=now,
    )
    StateObject.objects.filter(pk=updates[1].pk).update(state=ObjectState.MISSING)
    record("olivia", "job.update.requested", "fuseki-b", {"job": 1})
    record("anonymous", "login.failed", "mallory", {"ip": "203.0.113.9", "reason": "invalid_login"})
    Job.objects.create(
        kind=JobKind.UPDATE_ALL,
        dataset=flood,
        status=JobStatus.RUNNING,
        progress=45,
        progress_text="5 of 11 servers done",
        actor="olivia",
        started_at=now,
    )
    Job.objects.create(
        kind=JobKind.GC,
        dataset=flood,
        params={"dry_run": True},
        status=JobStatus.SUCCEEDED,
        progress=100,
        result={"summary": "would delete 2 expired updates (1.2 kB)", "delete": [updates[0].key]},
        actor="olivia",
        started_at=now - timedelta(minutes=3),
        finished_at=now - timedelta(minutes=2),
    )
    return {"flood": flood, "updates": updates, "lagging": lagging}


def test_an_operator_logs_in_and_sees_the_fleet_with_lags(browser_page, live_server, showcase):
    make_user("olivia", "operator")
    page = browser_page
    page.goto(f"{live_server.url}/")
    page.wait_for_url("**/login/**")
    shoot(page, "login")
    log_in(page, live_server, "olivia")
    row = page.locator("#server-fuseki-b")
    assert row.locator(".badge").inner_text() == "behind"
    assert row.locator(".lag").inner_text() == "4 updates, 12 min behind"
    assert page.locator("#server-fuseki-c .badge").inner_text() == "failing"
    assert page.locator("#server-fuseki-d .badge").inner_text() == "unreachable"
    assert page.locator("#server-fuseki-e .badge").inner_text() == "rebuilding"
    assert page.locator("#server-fuseki-old .badge").inner_text() == "disabled"
    assert page.locator("#server-fuseki-a .lag").inner_text() == "up to date"
    assert page.locator("#server-fuseki-b svg.spark polyline").count() == 1
    exact = page.locator("#server-fuseki-b time").first.get_attribute("title")
    assert exact and exact.endswith("+00:00")
    shoot(page, "fleet")
    page.set_viewport_size({"width": 390, "height": 844})
    shoot(page, "fleet-phone")
    page.set_viewport_size({"width": 1280, "height": 860})
    for name, path in [
        ("server", "/servers/fuseki-b/"),
        ("server-failing", "/servers/fuseki-c/"),
        ("rebuild-confirm", "/servers/fuseki-b/rebuild"),
        ("publications", "/publications/"),
        ("objects", "/objects/"),
        ("objects-problems", "/objects/?state=problems"),
        ("audit", "/audit/"),
        ("jobs", "/jobs/"),
        ("job-gc-dry-run", f"/jobs/{Job.objects.get(kind=JobKind.GC).pk}/"),
        ("not-found", "/no/such/page"),
    ]:
        page.goto(f"{live_server.url}{path}")
        assert page.locator("h1").count() == 1, name
        shoot(page, name)
    page.goto(f"{live_server.url}/publications/")
    assert page.locator("td.applied").first.inner_text().endswith("of 1 server")


def test_the_fleet_refreshes_itself_without_reloading(browser_page, live_server, showcase):
    make_user("victor", "viewer")
    page = browser_page
    log_in(page, live_server, "victor")
    # A marker on the window survives an htmx swap but not a reload.
    page.evaluate("window.__notReloaded = true")
    lagging = showcase["lagging"]
    Server.objects.filter(pk=lagging.pk).update(effective_ns=showcase["updates"][-1].effective_ns)
    page.wait_for_function(
        "document.querySelector('#server-fuseki-b .lag').innerText === 'up to date'", timeout=20_000
    )
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("#server-fuseki-b .badge").inner_text() == "ok"


def test_a_viewer_cannot_see_the_action_buttons_or_post_them(browser_page, live_server, showcase):
    make_user("victor", "viewer")
    page = browser_page
    log_in(page, live_server, "victor")
    page.goto(f"{live_server.url}/servers/fuseki-b/")
    assert page.get_by_role("button", name="Update now").count() == 0
    assert page.get_by_text("Rebuild").count() == 0
    shoot(page, "server-as-viewer")
    page.goto(f"{live_server.url}/jobs/")
    assert page.get_by_role("button", name="GC dry run").count() == 0
    assert page.get_by_role("button", name="Build image").count() == 0
    assert page.locator("nav a", has_text="Audit").count() == 0
    # Posting the action anyway, with a valid CSRF token from the page, is refused.
    status = page.evaluate(
        """async () => {
            const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
            const r = await fetch('/servers/fuseki-b/update', {method: 'POST', headers: {'X-CSRFToken': token}});
            return r.status;
        }"""
    )
    assert status == 403
    assert Job.objects.filter(kind=JobKind.UPDATE).count() == 0


# --- Update now against the real agent and the real trigger job -------------------------------


def missing_real_pieces() -> list[str]:
    """What the live-update test needs and this checkout lacks (the agent, the trigger job, the report API)."""
    missing = []
    if importlib.util.find_spec("servers.fleet") is None:
        missing.append("the trigger job (servers.fleet.run_trigger_job)")
    if importlib.util.find_spec("dmsupdate.agent.cli") is None:
        missing.append("the agent (dms-update serve)")
    try:
        resolve("/api/v1/servers/fuseki-live/report/")
    except Resolver404:
        missing.append("the agent report API (POST /api/v1/servers/{name}/report/)")
    return missing


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
    missing = missing_real_pieces()
    if missing:
        pytest.skip("needs " + "; ".join(missing) + ", not on this branch yet")
    from accounts.models import ApiToken

    operator = make_user("olivia", "operator")
    state = tmp_path / "state"
    state.mkdir()
    dataset = Dataset.objects.create(name="flood", s3root=f"file://{state}")
    start = EffectiveTime.from_datetime(timezone.now() - timedelta(minutes=30))
    # The base: a dump, then one update the server applies before the test.
    dump = format_key(start, "base", "dump")
    (state / dump).parent.mkdir(parents=True)
    (state / dump).write_bytes(
        gzip.compress(b'<http://example.org/s> <http://example.org/p> "base" <http://example.org/g> .\n')
    )
    now = timezone.now()
    StateObject.objects.create(
        dataset=dataset,
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
    register_update(dataset, times[0], "http://example.org/graph/0")

    server = Server.objects.create(name="fuseki-live", dataset=dataset, agent_token="agent-secret-for-tests")
    _, report_key = ApiToken.issue(operator, "agent", name="fuseki-live agent", server=server)
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
        register_update(dataset, t, f"http://example.org/graph/{i}")
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
