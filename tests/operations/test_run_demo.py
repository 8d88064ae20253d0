"""`manage.py run_demo`: the web server, a worker and the agents start, answer, and all stop on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.management import call_command

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def processes_started_for(var_dir: Path) -> list[int]:
    """PIDs of every process whose environment names this var dir: run_demo and all it started."""
    marker = f"DMSUPDATE_VAR_DIR={var_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            found.append(int(entry.name))
    return found


def test_run_demo_serves_the_demo_and_stops_every_process_on_ctrl_c(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    port = free_port()
    call_command("demo", "--days", "2", "--stations", "2", "--port", str(port), verbosity=0)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url(),
        "DMSUPDATE_VAR_DIR": str(settings.VAR_DIR),
        "DMSUPDATE_Q_WORKERS": "1",
    }
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
        assert lines and lines[-1].startswith("Ctrl-C stops everything"), "".join(lines)
        assert any(line.startswith(f"dmsupdate demo running: http://127.0.0.1:{port}/") for line in lines)
        assert any(line.startswith("login: admin / ") for line in lines)
        # run_demo, web, qcluster (with its workers) and three agents.
        assert len(processes_started_for(settings.VAR_DIR)) >= 6

        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()["status"] == "ok"
        from servers.models import Server

        for server in Server.objects.all():
            config = json.loads(
                (settings.VAR_DIR / "demo" / "agents" / server.name / "config.json").read_text()
            )
            status = requests.get(
                f"{server.agent_url}/status",
                headers={"Authorization": f"Bearer {config['agent_token']}"},
                timeout=10,
            )
            assert status.status_code == 200
            assert status.json()["effectiveDate"] == server.effective.path

        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    assert proc.returncode == 0, "".join(lines) + rest
    assert rest.rstrip().endswith("all stopped")
    assert processes_started_for(settings.VAR_DIR) == []
