"""Fixtures of the dashboard tests: people with each role, and a small fleet with lags."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from dmsupdate.state.keys import EffectiveTime
from publications.models import Dataset, StateObject
from servers.models import Server, StatusReport
from servers.services import note_lag_hour
from tests.factories import register_update
from tests.ui.browser import CHROMIUM, CHROMIUM_ARGS

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Dashboard tests create many accounts; the production hasher's slowness is not what they test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _user(username: str, group: str | None = None, **extra) -> User:
    user = User.objects.create_user(username, password=PASSWORD, **extra)
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


@pytest.fixture
def operator_user(db) -> User:
    return _user("olivia", "operator")


@pytest.fixture
def viewer_user(db) -> User:
    return _user("victor", "viewer")


@pytest.fixture
def nobody(db) -> User:
    """A logged-in account with no dashboard role."""
    return _user("nadia")


@pytest.fixture
def operator_client(client, operator_user):
    client.force_login(operator_user)
    return client


@pytest.fixture
def viewer_client(client, viewer_user):
    client.force_login(viewer_user)
    return client


@pytest.fixture
def ui_dataset(db, tmp_path) -> Dataset:
    root = tmp_path / "state"
    root.mkdir()
    return Dataset.objects.create(name="flood", s3root=f"file://{root}")


def _publish_updates(ui_dataset: Dataset, count: int, start: EffectiveTime, step_seconds: int = 60) -> list:
    """Register `count` published updates (and their publication events), one every `step_seconds`."""
    return [
        register_update(
            ui_dataset,
            EffectiveTime(start.nanos + i * step_seconds * 1_000_000_000),
            f"http://example.org/graph/{i}",
            size=100 + i,
        )
        for i in range(count)
    ]


@pytest.fixture
def updates(ui_dataset) -> list[StateObject]:
    """Five published updates, a minute apart, ending ten minutes ago."""
    start = EffectiveTime.from_datetime(timezone.now() - timedelta(minutes=14))
    return _publish_updates(ui_dataset, 5, start)


def _add_server(ui_dataset: Dataset, name: str, effective_ns: int | None, **fields) -> Server:
    """A server that reported `effective_ns` a minute ago, with a few status reports for its sparkline."""
    now = timezone.now()
    server = Server.objects.create(
        name=name,
        dataset=ui_dataset,
        effective_ns=effective_ns,
        last_report_at=fields.pop("last_report_at", now - timedelta(minutes=1)),
        last_succeeded=fields.pop("last_succeeded", True),
        **fields,
    )
    for hours, lag in ((5, 600.0), (3, 240.0), (1, 60.0)):
        StatusReport.objects.create(
            server=server,
            received_at=now - timedelta(hours=hours),
            effective_ns=effective_ns,
            lag_seconds=lag,
        )
        note_lag_hour(server.pk, now - timedelta(hours=hours), 0, lag)
    return server


@pytest.fixture
def fleet(ui_dataset, updates) -> dict[str, Server]:
    """Three servers of `flood`: one up to date, one two updates behind, one failing on a key."""
    return {
        "fresh": _add_server(ui_dataset, "fuseki-1", updates[-1].effective_ns),
        "lagging": _add_server(ui_dataset, "fuseki-2", updates[2].effective_ns),
        "broken": _add_server(
            ui_dataset,
            "fuseki-3",
            updates[0].effective_ns,
            last_succeeded=False,
            failed_key=updates[1].key,
            last_error="HTTP 500 from the store",
        ),
    }


@pytest.fixture
def add_server(db):
    """`add_server(dataset, name, effective_ns, **fields)`: a server with a few reports."""
    return _add_server


@pytest.fixture
def publish_updates(db):
    """`publish_updates(dataset, count, start)`: published updates with their publication events."""
    return _publish_updates


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
