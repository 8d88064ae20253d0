"""The agent against a real OpenLink Virtuoso 7 (Debian's `virtuoso-opensource`), digest auth on.

Virtuoso answers a chunked body 201/204 and reads nothing, answers `DROP ALL` 200
and drops nothing, and answers an N-Quads POST to its Graph Store endpoint with
an HTML form: the agent's full cycle must still leave it holding exactly what an
embedded replay of the same root holds, with the dump loaded graph by graph or
by the contrib `install_dump` hook (bulk loader through isql-vt).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from dmsupdate.agent.config import Config
from dmsupdate.agent.runner import Runner
from tests.agent.conftest import StateRoot, agent_env
from tests.agent.httpfakes import Recorded, local_server
from tests.stores.conftest import (
    G1,
    agent_config,
    embedded_replay,
    publish_cycle,
    store_contents,
    virtuoso_auth,
)
from tests.stores.instances import DBA_PASSWORD, SPARQL_PASSWORD, SPARQL_USER, Virtuoso

REPO_CONTRIB = __import__("pathlib").Path(__file__).resolve().parents[2] / "contrib"
pytestmark = pytest.mark.stores


def virtuoso_config(v: Virtuoso, state: StateRoot, home, password: str = SPARQL_PASSWORD, **extra) -> dict:
    secret = home / "sparql-password"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(password + "\n")
    data = {
        "s3root": state.root,
        "dblocation": str(home / "db"),
        "dbname": "DS-DB",
        "logArea": str(home / "log"),
        "bindir": str(home / "bin"),
        "update_endpoint": f"{v.base}/sparql-auth",
        "gsp_endpoint": f"{v.base}/sparql-graph-crud-auth",
        "auth": {"scheme": "digest", "username": SPARQL_USER, "password_file": str(secret)},
        "hook_wait_seconds": 30,
        "lock_timeout": 0.5,
    }
    if state.endpoint:
        data["s3endpoint"] = state.endpoint
    data.update(extra)
    return data


def run_cli(config_data: dict, home, *args: str) -> subprocess.CompletedProcess:
    path = home / "config.json"
    path.write_text(json.dumps(config_data))
    return subprocess.run(
        [sys.executable, "-m", "dmsupdate.agent", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=agent_env(),
    )


def test_full_cycle_without_hook_equals_an_embedded_replay_and_shows_no_credential(
    virtuoso, file_state, tmp_path
):
    publish_cycle(file_state)
    plane = Recorded(status=200, answer={"server": "v1"})
    with local_server(plane) as cp:
        data = virtuoso_config(
            virtuoso,
            file_state,
            tmp_path / "agent",
            controlplane={"url": cp, "server": "v1", "token": "cpTok3n-x"},
        )
        done = run_cli(data, tmp_path / "agent", "update")

    assert done.returncode == 0, done.stderr
    status = json.loads((tmp_path / "agent" / "log" / "status.json").read_text())
    assert status["lastSucceeded"] is True and status["applied"] == 10, status
    # The query URL is derived from /sparql-auth (it answers queries too).
    assert Config.from_dict(data).endpoints()[0] == f"{virtuoso.base}/sparql-auth"
    expected = embedded_replay(file_state, tmp_path / "embedded")
    assert len(expected) == 18 and len({line.rsplit(" ", 1)[-1] for line in expected}) == 4
    assert store_contents(f"{virtuoso.base}/sparql-auth", virtuoso_auth()) == expected
    # The fingerprint of the same data agrees across the two stores (DESIGN §5b): Virtuoso's
    # system graphs and its union default graph are not counted as data.
    embedded = Runner(agent_config(file_state.root, tmp_path / "embedded", file_state.endpoint)).verify()
    remote = Runner(Config.from_dict(data)).verify()
    assert remote["fingerprint"]["graphs"] == embedded["fingerprint"]["graphs"]
    assert remote["fingerprint"]["total"] == embedded["fingerprint"]["total"]
    outputs = [done.stdout, done.stderr, json.dumps(status), *(r["body"].decode() for r in plane.requests)]
    assert plane.requests, "the run was reported"
    for text in outputs:
        assert SPARQL_PASSWORD not in text and DBA_PASSWORD not in text


def test_a_wrong_password_fails_the_first_key_and_no_password_is_shown(virtuoso, file_state, tmp_path):
    keys = publish_cycle(file_state)
    data = virtuoso_config(virtuoso, file_state, tmp_path / "agent", password="wrongPassw0rd")

    done = run_cli(data, tmp_path / "agent", "update")

    status = json.loads((tmp_path / "agent" / "log" / "status.json").read_text())
    assert done.returncode == 1 and status["failedKey"] == keys[0]
    assert "HTTP 401" in status["error"], status["error"]
    for text in (done.stdout, done.stderr, json.dumps(status)):
        assert "wrongPassw0rd" not in text and SPARQL_PASSWORD not in text


@pytest.fixture
def dump_hook(virtuoso, tmp_path, monkeypatch):
    """The contrib install_dump hook in bindir, set up for this Virtuoso."""
    bindir = tmp_path / "agent" / "bin"
    bindir.mkdir(parents=True)
    shutil.copy(REPO_CONTRIB / "virtuoso" / "install_dump", bindir / "install_dump")
    password = tmp_path / "dba-password"
    password.write_text(DBA_PASSWORD + "\n")
    monkeypatch.setenv("VIRTUOSO_ISQL", f"127.0.0.1:{virtuoso.sql_port}")
    monkeypatch.setenv("VIRTUOSO_DBA_PASSWORD_FILE", str(password))
    monkeypatch.setenv("VIRTUOSO_LOAD_DIR", str(virtuoso.load_dir))
    return bindir


def test_dump_through_the_contrib_bulk_loader_hook_then_the_replay(virtuoso, file_state, tmp_path, dump_hook):
    # Something left from an earlier life of the store: the hook must empty it.
    virtuoso.isql(f"SPARQL INSERT DATA {{ GRAPH <{G1}-old> {{ <urn:a> <urn:b> <urn:c> }} }};")
    publish_cycle(file_state)
    config = Config.from_dict(virtuoso_config(virtuoso, file_state, tmp_path / "agent"))

    runner = Runner(config)
    status = runner.update()

    assert status["lastSucceeded"] is True, status
    expected = embedded_replay(file_state, tmp_path / "embedded")
    assert store_contents(f"{virtuoso.base}/sparql-auth", virtuoso_auth()) == expected


def test_a_hook_that_loads_nothing_is_caught_by_verify(virtuoso, file_state, tmp_path):
    bindir = tmp_path / "agent" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "install_dump").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "install_dump").chmod(0o755)
    keys = publish_cycle(file_state)
    config = Config.from_dict(virtuoso_config(virtuoso, file_state, tmp_path / "agent"))

    status = Runner(config).update()

    assert status["lastSucceeded"] is False and status["failedKey"] == keys[0]
    assert "verify: the store does not hold the dump" in status["error"], status["error"]
