"""The agent against the Oxigraph server behind a basic-auth proxy serving Fuseki's layout (`/ds/…`).

The proxy (tests/stores/authproxy.py) answers a chunked body 204 without
storing it, as Virtuoso does, so these runs also show that every upload goes
with a `Content-Length`. The store takes N-Quads, so a dump without a hook is
one N-Quads POST.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest

from dmsupdate.agent.config import Config
from dmsupdate.agent.runner import Runner
from tests.agent.conftest import agent_env
from tests.agent.httpfakes import Recorded, local_server
from tests.stores.conftest import (
    PROXY_PASSWORD,
    PROXY_USER,
    embedded_replay,
    publish_cycle,
    store_contents,
)

pytestmark = pytest.mark.stores


def base_config(state, home, **extra) -> dict:
    data = {
        "s3root": state.root,
        "dblocation": str(home / "db"),
        "dbname": "DS-DB",
        "logArea": str(home / "log"),
        "bindir": str(home / "bin"),
        "lock_timeout": 0.5,
        "hook_wait_seconds": 10,
    }
    data.update(extra)
    return data


def run_cli(data: dict, home, *args: str, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    path = home / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    command = [sys.executable, "-m", "dmsupdate.agent", "--config", str(path), *args]
    if popen:
        return subprocess.Popen(command, env=agent_env(), **popen)
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=agent_env())


def test_fuseki_layout_with_credentials_in_the_url_replays_like_the_embedded_store(
    fuseki_like, file_state, tmp_path
):
    proxy, server = fuseki_like
    publish_cycle(file_state)
    plane = Recorded(status=200, answer={"server": "o1"})
    home = tmp_path / "agent"
    with local_server(plane) as cp:
        # `service` without its trailing slash, user:password in it: basic auth.
        data = base_config(
            file_state,
            home,
            service=f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}/ds",
            controlplane={"url": cp, "server": "o1", "token": "planeTok3n"},
        )
        done = run_cli(data, home, "update")

    assert done.returncode == 0, done.stderr
    status = json.loads((home / "log" / "status.json").read_text())
    assert status["lastSucceeded"] is True and status["applied"] == 10
    assert proxy.log.chunked == 0 and proxy.log.unauthorised == 0
    assert store_contents(f"{server.base}/query") == embedded_replay(file_state, tmp_path / "embedded")
    for text in [done.stdout, done.stderr, json.dumps(status), *(r["body"].decode() for r in plane.requests)]:
        assert PROXY_PASSWORD not in text


def test_an_unauthorised_run_names_the_url_without_the_password(fuseki_like, file_state, tmp_path):
    proxy, _server = fuseki_like
    keys = publish_cycle(file_state)
    home = tmp_path / "agent"
    data = base_config(file_state, home, service=f"http://{PROXY_USER}:n0tTheP4ss@127.0.0.1:{proxy.port}/ds/")

    done = run_cli(data, home, "update")

    status = json.loads((home / "log" / "status.json").read_text())
    assert done.returncode == 1 and status["failedKey"] == keys[0]
    assert "HTTP 401" in status["error"] and f"127.0.0.1:{proxy.port}/ds/" in status["error"]
    for text in (done.stdout, done.stderr, json.dumps(status)):
        assert "n0tTheP4ss" not in text


def test_dump_through_a_hook_with_basic_auth_from_a_password_file(fuseki_like, file_state, tmp_path):
    proxy, server = fuseki_like
    publish_cycle(file_state)
    home = tmp_path / "agent"
    (home / "bin").mkdir(parents=True)
    hook = home / "bin" / "install_dump"
    # A hook that loads the dump itself (as Fuseki's tdb2.tdbloader hook would, with the server stopped).
    hook.write_text(
        f"#!{sys.executable}\n"
        "import gzip, sys, urllib.request, base64\n"
        "body = gzip.decompress(open(sys.argv[1].removeprefix('file://'), 'rb').read())\n"
        f"auth = base64.b64encode(b'{PROXY_USER}:{PROXY_PASSWORD}').decode()\n"
        f"req = urllib.request.Request('http://127.0.0.1:{proxy.port}/ds/data', data=body, method='POST',\n"
        "    headers={'Content-Type': 'application/n-quads', 'Authorization': 'Basic ' + auth})\n"
        "urllib.request.urlopen(req)\n"
    )
    hook.chmod(0o755)
    (home / "password").write_text(PROXY_PASSWORD + "\n")
    data = base_config(
        file_state,
        home,
        service=f"http://127.0.0.1:{proxy.port}/ds/",
        auth={"scheme": "basic", "username": PROXY_USER, "password_file": "password"},
    )
    config = Config.from_dict(data, str(home / "config.json"))

    status = Runner(config).update()

    assert status["lastSucceeded"] is True, status
    assert store_contents(f"{server.base}/query") == embedded_replay(file_state, tmp_path / "embedded")


@pytest.mark.parametrize("kill_at", [6, 10])
def test_kill_9_mid_replay_repeats_at_most_the_operation_in_flight(
    fuseki_like, file_state, tmp_path, kill_at
):
    proxy, server = fuseki_like
    publish_cycle(file_state)
    home = tmp_path / "agent"
    data = base_config(
        file_state,
        home,
        service=f"http://127.0.0.1:{proxy.port}/ds",
        auth={"scheme": "basic", "username": PROXY_USER, "password": PROXY_PASSWORD},
    )
    agent = run_cli(data, home, "update", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(n: int) -> None:  # the store has applied the write, the agent has not heard back
        if n == kill_at:
            os.kill(agent.pid, signal.SIGKILL)

    proxy.log.after_write = kill
    assert agent.wait(120) == -signal.SIGKILL
    proxy.log.after_write = None
    before = len(proxy.log.writes)
    resumed = run_cli(data, home, "update")

    assert resumed.returncode == 0, resumed.stderr
    assert before == kill_at
    counts = Counter(proxy.log.writes)
    repeated = [w for w, n in counts.items() if n > 1]
    assert repeated == [proxy.log.writes[kill_at - 1]], repeated
    assert counts[repeated[0]] == 2
    assert store_contents(f"{server.base}/query") == embedded_replay(file_state, tmp_path / "embedded")
