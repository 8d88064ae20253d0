"""The web tier is stateless: two gunicorn processes behind one database give the same answers.

Sessions, CSRF and rate-limit counters (API tokens, failed logins) live in
PostgreSQL (database sessions and the database cache), never in a process, so a
load balancer may send each request of one client to any process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tests.conftest import free_port, wait_for_port
from tests.test_qcluster import database_url

ROOT = Path(__file__).resolve().parents[2]
SECRET = "stateless-web-test-secret-key-shared-by-both-processes"

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class WebProcess:
    """One gunicorn process (the documented configuration, two workers) and its base URL."""

    url: str
    proc: subprocess.Popen
    log: Path

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=30, allow_redirects=False, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=30, allow_redirects=False, **kwargs)


def production_env(var_dir: Path) -> dict[str, str]:
    """Production settings (debug off, a shared secret) on the test database, over plain HTTP."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url(),
        "DMSUPDATE_DEBUG": "0",
        "DMSUPDATE_SECRET_KEY": SECRET,
        "DMSUPDATE_ALLOWED_HOSTS": "127.0.0.1",
        "DMSUPDATE_SSL_REDIRECT": "0",
        "DMSUPDATE_VAR_DIR": str(var_dir),
        # Small limits, so the shared counters show within a few requests.
        "DMSUPDATE_THROTTLE_TOKEN": "6/min",
        "DMSUPDATE_LOGIN_FAILURE_LIMIT": "4",
    }


def start_gunicorn(env: dict[str, str], log: Path) -> WebProcess:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "dmsupdate.wsgi"]
        + ["--bind", f"127.0.0.1:{port}", "--workers", "2", "--access-logfile", "-"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    web = WebProcess(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_for_port(port, timeout=60)
    except RuntimeError:
        stop(web)
        raise AssertionError(f"gunicorn did not start:\n{log.read_text(errors='replace')[-3000:]}") from None
    return web


def stop(web: WebProcess) -> None:
    """SIGTERM lets gunicorn stop its workers; anything left in the group is killed."""
    try:
        web.proc.terminate()
        web.proc.wait(20)
    except subprocess.TimeoutExpired:
        pass
    finally:
        try:
            os.killpg(web.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        web.proc.wait(10)


@pytest.fixture
def two_web_processes(tmp_path) -> Iterator[tuple[WebProcess, WebProcess]]:
    """Two gunicorn processes, two workers each, on free ports, behind the test database."""
    call_command("createcachetable", verbosity=0)
    env = production_env(tmp_path / "var")
    # The manifest static storage of production needs collected files (shared, like a CDN would be).
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    first = start_gunicorn(env, tmp_path / "web-a.log")
    try:
        second = start_gunicorn(env, tmp_path / "web-b.log")
    except BaseException:
        stop(first)
        raise
    try:
        yield first, second
    finally:
        stop(first)
        stop(second)


@pytest.fixture
def admin_user():
    """A superuser who logs in with a password."""
    return get_user_model().objects.create_superuser("ada", "ada@example.org", "correct horse battery")


def cookies_of(response: requests.Response) -> dict[str, str]:
    # Production cookies are Secure: a client on plain HTTP would drop them, so they are carried by hand.
    return {c.name: c.value for c in response.cookies}


def login(page: WebProcess, submit: WebProcess, path: str, username: str, password: str) -> requests.Response:
    """GET the login form from one process and POST it to the other."""
    form = page.get(path)
    assert form.status_code == 200, form.text[:500]
    jar = cookies_of(form)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    return submit.post(
        path,
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        cookies=jar,
        headers={"Referer": page.url + path},
    )


def test_both_processes_give_the_same_answers_to_the_same_requests(two_web_processes):
    first, second = two_web_processes
    for path in ["/healthz", "/api/v1/schema/?format=json", "/api/v1/no-such-thing/"]:
        a, b = first.get(path), second.get(path)
        assert (a.status_code, a.headers.get("Content-Type")) == (
            b.status_code,
            b.headers.get("Content-Type"),
        )
        assert a.content == b.content, path
    assert first.get("/healthz").json() == {"status": "ok", "database": "postgresql"}


def test_a_session_opened_on_one_process_is_valid_on_the_other_and_closed_on_both(
    two_web_processes, admin_user
):
    first, second = two_web_processes
    logged_in = login(first, second, "/login/", "ada", "correct horse battery")
    assert logged_in.status_code == 302, logged_in.text[:500]
    session = cookies_of(logged_in)
    assert "sessionid" in session

    pages = [web.get("/", cookies=session) for web in (first, second)]
    assert [p.status_code for p in pages] == [200, 200]
    assert all("ada" in p.text for p in pages)

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', pages[0].text)
    assert token is not None
    out = second.post(
        "/logout/",
        data={"csrfmiddlewaretoken": token.group(1)},
        cookies={**session, **cookies_of(pages[0])},
        headers={"Referer": first.url + "/"},
    )
    assert out.status_code == 302
    for web in (first, second):
        page = web.get("/", cookies=session)
        assert page.status_code == 302 and "/login/" in page.headers["Location"]


@pytest.fixture
def viewer_key(admin_user) -> str:
    """An API token (viewer role) of the admin user."""
    from accounts.models import ApiToken

    _, key = ApiToken.issue(admin_user, "viewer", name="scale-test")
    return key


def test_the_api_rate_limit_of_a_token_counts_requests_on_both_processes(two_web_processes, viewer_key):
    first, second = two_web_processes
    headers = {"Authorization": f"Token {viewer_key}"}
    # DMSUPDATE_THROTTLE_TOKEN=6/min for both processes: six requests in all, split between them.
    answers = [(first, second)[n % 2].get("/api/v1/datasets/", headers=headers) for n in range(6)]
    assert [a.status_code for a in answers] == [200] * 6
    assert answers[0].json() == answers[1].json()
    for web in (first, second):
        refused = web.get("/api/v1/datasets/", headers=headers)
        assert refused.status_code == 429
        assert refused.json()["error"] == "throttled"
        assert int(refused.headers["Retry-After"]) > 0


def test_failed_logins_count_on_both_processes(two_web_processes, admin_user):
    first, second = two_web_processes
    # DMSUPDATE_LOGIN_FAILURE_LIMIT=4: four failures, alternating between the processes...
    for n in range(4):
        page, submit = (first, second) if n % 2 else (second, first)
        failed = login(page, submit, "/login/", "ada", f"wrong password {n}")
        assert failed.status_code == 200 and "Too many failed logins" not in failed.text
    # ...and the right password is refused on either: the count lives in the database cache.
    for page, submit in ((first, second), (second, first)):
        refused = login(page, submit, "/login/", "ada", "correct horse battery")
        assert refused.status_code == 200
        assert "Too many failed logins" in refused.text
