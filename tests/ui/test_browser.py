"""The dashboard in headless Chromium (Debian's /usr/bin/chromium driven by Playwright) against a live server.

Screenshots of every page go to tests/artefacts/ (ignored by git) for review.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.services import record
from dmsupdate.state.keys import EffectiveTime
from jobs.models import Job, JobKind, JobStatus
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from servers.models import RunResult, Server, StatusReport, UpdateRun
from servers.services import note_lag_hour
from tests.factories import register_update
from tests.ui.browser import NANOS, log_in, make_user, shoot

pytestmark = [pytest.mark.browser]


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

    def server(name, ui_dataset, eff_index, **fields):
        eff = updates[eff_index].effective_ns if eff_index is not None else None
        s = Server.objects.create(
            name=name,
            dataset=ui_dataset,
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
            note_lag_hour(s.pk, now - timedelta(hours=h), int(lag // 180), lag)
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
