"""The project as a whole: health check, migrations, deploy checks, lint, settings from the environment."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    """Run a Python module or script from the repository root with extra environment."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    # Set by the browser tests for their live server; never part of a deployment.
    full_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120
    )


def production_env() -> dict[str, str]:
    return {
        "DMSUPDATE_DEBUG": "0",
        "DMSUPDATE_SECRET_KEY": secrets.token_urlsafe(50),
        "DMSUPDATE_ALLOWED_HOSTS": "dms.example.org",
    }


@pytest.mark.django_db
def test_healthz_answers_200_when_the_database_answers(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "postgresql"}


def test_healthz_answers_503_json_when_the_database_is_down():
    code = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "r = Client().get('/healthz')\n"
        "print(r.status_code, r.json()['error'])\n"
    )
    out = run(
        ["-c", code],
        DJANGO_SETTINGS_MODULE="dmsupdate.settings",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/nothing",
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["503", "database_unavailable"]


@pytest.mark.django_db
def test_models_and_migrations_agree():
    # SystemExit(1) when a model change has no migration.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_deploy_checks_pass_with_production_settings():
    out = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **production_env())

    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_production_without_a_secret_key_refuses_to_start_with_one_line():
    env = {**production_env(), "DMSUPDATE_SECRET_KEY": ""}

    out = run(["manage.py", "check"], **env)

    assert out.returncode == 1
    assert out.stderr.strip() == (
        "manage.py: configuration error: DMSUPDATE_SECRET_KEY must be set when DMSUPDATE_DEBUG is off"
    )


def test_debug_mode_runs_without_a_secret_key():
    out = run(["manage.py", "check"], DMSUPDATE_DEBUG="1", DMSUPDATE_SECRET_KEY="")

    assert out.returncode == 0, out.stderr


BROKER_PROBE = (
    "import django; django.setup()\n"
    "from django_q.brokers import get_broker\n"
    "from django.conf import settings\n"
    "print(type(get_broker()).__name__, settings.Q_CLUSTER.get('redis', '-'))\n"
)


def probe_env(tmp_path: Path, broker: str) -> dict[str, str]:
    # The ORM broker opens a connection when made: a scratch SQLite file answers it.
    return {
        "DJANGO_SETTINGS_MODULE": "dmsupdate.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'probe.sqlite3'}",
        "DMSUPDATE_Q_BROKER": broker,
    }


def test_the_orm_broker_is_the_default(tmp_path):
    out = run(["-c", BROKER_PROBE], **probe_env(tmp_path, ""))

    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ORM", "-"]


def test_a_redis_url_selects_the_redis_broker(tmp_path):
    url = "redis://127.0.0.1:6379/5"

    out = run(["-c", BROKER_PROBE], **probe_env(tmp_path, url))

    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Redis", url]


def test_ruff_finds_nothing_to_complain_about():
    out = run(["-m", "ruff", "check", "--no-cache", "."])

    assert out.returncode == 0, out.stdout + out.stderr


def test_the_web_tier_runs_threaded_workers_sized_from_the_environment(monkeypatch):
    import runpy

    monkeypatch.setenv("DMSUPDATE_WEB_WORKERS", "3")
    monkeypatch.setenv("DMSUPDATE_WEB_THREADS", "6")
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (config["worker_class"], config["workers"], config["threads"]) == ("gthread", 3, 6)
    monkeypatch.delenv("DMSUPDATE_WEB_WORKERS")
    monkeypatch.delenv("DMSUPDATE_WEB_THREADS")
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert config["workers"] == 2 * os.cpu_count() and config["threads"] == 4


def test_database_connections_persist_between_requests_and_are_checked_before_reuse(settings):
    database = settings.DATABASES["default"]
    assert database["CONN_MAX_AGE"] > 0 and database["CONN_HEALTH_CHECKS"] is True
