"""The admin's day on the demo, in headless Chromium, on the embedded default (SQLite) and on PostgreSQL.

`manage.py demo` and `manage.py run_demo` start the real thing (web server, worker, three
`dms-update serve` agents with embedded stores); the test publishes through the API as a
publisher would with curl, then does in the browser what an admin does: watch the
publication reach every server, update all, disable and enable two servers, rebuild one
after reading what the rebuild will install, and find the update a later one superseded.
Every page is saved as a screenshot in both colour schemes (tests/artefacts/).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings

from tests.conftest import free_port
from tests.ui.browser import shoot

pytestmark = [pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[2]


def both_schemes(page, name: str) -> None:
    """A screenshot in the light scheme, then in the dark one (prefers-color-scheme)."""
    shoot(page, name)
    page.emulate_media(color_scheme="dark")
    shoot(page, f"{name}-dark")
    page.emulate_media(color_scheme="light")


def demo_database(create: bool) -> str:
    """A database of its own for the demo, beside the test database: made afresh, or dropped."""
    db = settings.DATABASES["default"]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    name = f"{db['NAME']}_demo{worker}"[:63]
    conn = psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )
    with conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def demo(request, tmp_path):
    """The demo built and running on the given database; yields its URL, var dir and environment."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE") and not k.startswith("PYTEST")
    }
    env |= {
        "PYTHONPATH": str(ROOT),
        "DMSUPDATE_VAR_DIR": str(tmp_path / "var"),
        "DMSUPDATE_DEMO_PORT": str(port),
        "DMSUPDATE_Q_WORKERS": "1",
        # Publications a moment apart still make one trigger (the superseded postproc below).
        "DMSUPDATE_TRIGGER_DEBOUNCE_SECONDS": "3",
    }
    if request.param == "postgresql":
        env["DATABASE_URL"] = demo_database(create=True)

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    manage("migrate", "--noinput")
    manage("createcachetable")
    manage("demo", "--days", "2", "--stations", "4")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Ctrl-C stops everything"):
                break
        assert lines and lines[-1].startswith("Ctrl-C"), "".join(lines)
        yield {
            "url": f"http://127.0.0.1:{port}",
            "var": tmp_path / "var",
            "manage": manage,
            "db": request.param,
        }
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if request.param == "postgresql":
            demo_database(create=False)


def publish(demo, token: str, **fields) -> dict:
    """What a publisher does with curl: a multipart upload to /api/v1/publications/."""
    body = fields.pop("body")
    name = "update.ru" if fields["op"] in ("update", "postproc") else "update.nt"
    response = requests.post(
        f"{demo['url']}/api/v1/publications/",
        headers={"Authorization": f"Token {token}"},
        data={"dataset": "flood-demo", **fields},
        files={"file": (name, body)},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def until(page, check, seconds: float = 60, reload: bool = True) -> None:
    """Look again (reloading the page) until `check(page)` holds."""
    deadline = time.monotonic() + seconds
    while not check(page):
        assert time.monotonic() < deadline, f"still not there after {seconds} s: {page.url}"
        time.sleep(1)
        if reload:
            page.reload()


def test_the_admins_day_on_the_demo(demo, browser_page):
    suffix = "" if demo["db"] == "sqlite" else "-pg"
    login = dict(
        line.split(": ", 1)[1].split(" / ")
        for line in (demo["var"] / "demo" / "login.txt").read_text().splitlines()
    )
    token = demo["manage"]("issue_token", "--user", "admin", "--role", "publisher").strip().splitlines()[-1]

    # Publish with the API: a derived-data postproc, a later one of the same component
    # (which supersedes it), and new readings.
    early = publish(
        demo,
        token,
        op="postproc",
        label="derive",
        component="latest",
        body=b"INSERT DATA { <http://ex.org/a> <http://ex.org/b> 1 }",
    )
    late = publish(
        demo,
        token,
        op="postproc",
        label="derive",
        component="latest",
        body=b"INSERT DATA { <http://ex.org/a> <http://ex.org/b> 2 }",
    )
    readings = publish(
        demo,
        token,
        op="add",
        label="readings",
        graph="http://ex.org/graph/today",
        body=b'<http://ex.org/s> <http://ex.org/p> "9.1" .\n',
    )

    page = browser_page
    page.goto(f"{demo['url']}/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", login["admin"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{demo['url']}/")

    # Every server applies it: the publication page shows 3 of 3, with each server.
    page.goto(f"{demo['url']}/publications/{readings['id']}/")
    until(page, lambda p: p.locator("#applied-on").inner_text().startswith("3 of 3"), 90)
    for name in ("flood-a", "flood-b", "flood-c"):
        assert page.locator(f"#rollout-{name} .outcome").inner_text() == "applied"
    both_schemes(page, f"day-publication{suffix}")
    page.goto(f"{demo['url']}/publications/")
    page.locator(f'a[href="/publications/{readings["id"]}/"]', has_text="3 of 3").click()
    page.wait_for_url(f"**/publications/{readings['id']}/")

    # The superseded postproc shows as skipped, with its reason, on its page and in the job.
    page.goto(f"{demo['url']}/publications/{early['id']}/")
    row = page.locator("#rollout-flood-a")
    assert row.locator(".outcome").inner_text() == "skipped"
    assert f"superseded by a later postproc of component 'latest' ({late['key']})" in row.inner_text()
    both_schemes(page, f"day-publication-skipped{suffix}")
    page.goto(f"{demo['url']}/jobs/")
    # The publications made one update (or two, when the last came after the first had started).
    triggered = [a.get_attribute("href") for a in page.locator("table.jobs a", has_text="Update all").all()]
    assert 1 <= len(triggered) <= 3, triggered
    for href in triggered:
        page.goto(f"{demo['url']}{href}")
        assert page.locator(".job-status").inner_text() == "succeeded"
        if "superseded by a later postproc" in page.locator("#job-server-flood-a").inner_text():
            break
    else:
        raise AssertionError(f"no job shows the superseded postproc as skipped: {triggered}")
    both_schemes(page, f"day-job-publication{suffix}")

    # "Update all" from the fleet page; its job page follows it to `succeeded` without a reload.
    page.goto(f"{demo['url']}/")
    both_schemes(page, f"day-fleet{suffix}")
    before = page.evaluate("[...document.querySelectorAll('#jobs-flood-demo .job')].map(e => e.id)")
    page.locator("#dataset-flood-demo").get_by_role("button", name="Update all").click()
    # The job it started appears in the dataset's section (the ones before it may linger there).
    new_id = page.wait_for_function(
        """(before) => [...document.querySelectorAll('#jobs-flood-demo .job')]
            .map(e => e.id).find(id => !before.includes(id))""",
        arg=before,
    ).json_value()
    page.locator(f"#{new_id} .job-title a").click()
    page.wait_for_url(f"**/jobs/{new_id.removeprefix('job-')}/")
    assert "by admin," in page.locator(".job-title").inner_text()  # the admin's own, not a publication's
    page.evaluate("window.__notReloaded = true")
    page.wait_for_function(
        "document.querySelector('.job-status').innerText.trim() === 'succeeded'", timeout=60_000
    )
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("table.job-servers tbody tr").count() == 3
    assert page.locator(".summary").inner_text() == "3 ok"
    both_schemes(page, f"day-job-update-all{suffix}")

    # Select two servers, disable them (after a confirmation saying what that means), enable them again.
    for action, badge in (("disable", "disabled"), ("enable", "ok")):
        page.goto(f"{demo['url']}/")
        page.check('input.pick[value="flood-b"]')
        page.check('input.pick[value="flood-c"]')
        page.locator("#act-flood-demo").get_by_role("button", name=f"{action.capitalize()}…").click()
        assert page.locator("h1").inner_text() == f"{action.capitalize()} 2 servers?"
        if action == "disable":
            assert "left out of Update all" in page.locator("#confirm").inner_text()
            both_schemes(page, f"day-confirm-disable{suffix}")
        page.check("input[name=confirm]")
        page.locator("#confirm").get_by_role("button", name=f"{action.capitalize()} 2 servers").click()
        page.wait_for_url(f"{demo['url']}/")
        for name in ("flood-b", "flood-c"):
            assert page.locator(f"#server-{name} .badge").inner_text() == badge
        if action == "disable":
            both_schemes(page, f"day-fleet-disabled{suffix}")

    # Rebuild one server: the confirmation names the image it will install.
    page.goto(f"{demo['url']}/servers/flood-a/")
    page.get_by_role("link", name="Rebuild…").click()
    image = page.locator("#rebuild-image").inner_text()
    assert image.startswith("images/") and image.endswith("_dump.nq.gz")
    assert "published updates after it" in page.locator("#confirm").inner_text()
    both_schemes(page, f"day-confirm-rebuild{suffix}")
    page.check("input[name=confirm]")
    page.get_by_role("button", name="Rebuild flood-a").click()
    page.wait_for_url("**/servers/flood-a/")
    page.wait_for_function(
        "document.querySelector('#job-panel .job-status') && "
        "document.querySelector('#job-panel .job-status').innerText.trim() === 'succeeded'",
        timeout=90_000,
    )
    until(page, lambda p: p.locator("#server-status .state .badge").inner_text() == "ok", 30)
    assert "triple" in page.locator("#store").inner_text()
    assert page.locator("#agent-version").inner_text().startswith("dms-update ")
    both_schemes(page, f"day-server{suffix}")
    page.goto(f"{demo['url']}/servers/flood-a/?range=7d")
    both_schemes(page, f"day-server-7d{suffix}")

    # No fleet job failed for its bookkeeping (the headline of the day on SQLite).
    page.goto(f"{demo['url']}/jobs/")
    outcomes = page.locator("table.jobs tbody tr").all_inner_texts()
    trigger_jobs = [row for row in outcomes if row.startswith(("Update", "Rebuild"))]
    assert len(trigger_jobs) >= 3 and all("succeeded" in row for row in trigger_jobs), trigger_jobs
    both_schemes(page, f"day-jobs{suffix}")
