"""What a run shows of itself: `progress` while it goes, `skipped`, `agentVersion`, `store`, and the terminal bar."""

from __future__ import annotations

import fcntl
import io
import json
import os
import struct
import subprocess
import sys
import termios

from dmsupdate.agent import version
from dmsupdate.agent.runner import Runner
from dmsupdate.agent.status import read_status
from dmsupdate.state.stores import open_store
from tests.agent.conftest import agent_env, quad, ttl
from tests.agent.test_cli import dms_update, embedded_config, write_config

G = "http://example.org/graph/g"


def publish_day(state, tmp_path) -> dict[str, str]:
    """A dump, three graph updates and two postprocs of one component (the first superseded)."""
    keys = {"dump": state.publish_dump(0, [quad("s", "p", "o", G)])}
    for i in range(3):
        keys[f"add{i}"] = state.publish(10 + i, "add", ttl(f"ex:a{i} ex:p ex:o ."), arg=G, fmt="ttl")
    keys["early"] = state.publish(
        20, "postproc", "INSERT DATA { <http://ex.org/x> <http://ex.org/y> 1 }", arg="derive", fmt="ru"
    )
    keys["late"] = state.publish(
        30, "postproc", "INSERT DATA { <http://ex.org/x> <http://ex.org/y> 2 }", arg="derive", fmt="ru"
    )
    return keys


def test_status_names_skipped_keys_the_agent_version_and_the_store(file_state, tmp_path, make_config):
    keys = publish_day(file_state, tmp_path)

    status = Runner(make_config(file_state)).update()

    assert status["lastSucceeded"] is True and status["applied"] == 5
    assert status["skipped"] == [
        {
            "key": keys["early"],
            "reason": f"superseded by a later postproc of component 'derive' ({keys['late']})",
        }
    ]
    assert status["agentVersion"] == version() != "unknown"
    # The dump's triple, three added ones and the postproc's: the ledger is not counted.
    assert status["store"]["kind"] == "oxigraph" and status["store"]["quads"] == 5
    assert status["store"]["bytes"] > 0
    assert status["progress"] is None and status["running"] is False


def test_progress_in_status_json_while_the_run_goes(file_state, tmp_path, make_config):
    keys = publish_day(file_state, tmp_path)
    config = make_config(file_state)
    seen: list[dict] = []

    class Watching:
        """The state root, reading status.json each time the run opens an object (what GET /status shows)."""

        def __init__(self) -> None:
            self.store = open_store(file_state.root)

        def open(self, key: str):
            runner._writer.flush()  # status.json is written by a thread of its own: what it shows a moment later
            seen.append({"key": key, **read_status(config.status_path)})
            return self.store.open(key)

        def __getattr__(self, name: str):
            return getattr(self.store, name)

    runner = Runner(config)
    runner._source = Watching  # the run reads the root through it
    runner.update()

    opened = {entry["key"]: entry for entry in seen}
    first_add = opened[keys["add0"]]
    assert first_add["running"] is True
    # The dump is done (operation 1 of 5: the superseded postproc does not run); its bytes counted.
    assert first_add["progress"]["done"] == 1 and first_add["progress"]["total"] == 5
    assert first_add["progress"]["bytes"] > 0
    assert opened[keys["late"]]["progress"]["done"] == 4
    assert read_status(config.status_path)["progress"] is None


def test_a_terminal_gets_a_progress_bar_and_a_pipe_gets_none(file_state, tmp_path):
    publish_day(file_state, tmp_path)
    path = write_config(tmp_path, embedded_config(file_state, tmp_path))

    piped = dms_update("--config", str(path), "rebuild")
    assert piped.returncode == 0, piped.stderr
    assert "ops" not in piped.stderr and "%|" not in piped.stderr

    # The same command with its standard error on a terminal (a pseudo-terminal 100 columns wide).
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    os.set_blocking(leader, False)
    env = agent_env()
    proc = subprocess.run(
        [sys.executable, "-m", "dmsupdate.agent", "--config", str(path), "rebuild"],
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
        timeout=120,
    )
    os.close(follower)
    shown = b""
    try:
        while chunk := os.read(leader, 65536):
            shown += chunk
    except (BlockingIOError, OSError):
        pass
    os.close(leader)
    assert proc.returncode == 0
    text = shown.decode(errors="replace")
    assert "5/5 ops 100%" in text
    assert "B/s" in text  # the rate
    assert json.loads(proc.stdout)["applied"] == 5  # standard output is the status alone


def test_runner_draws_its_bar_only_where_it_is_told(file_state, tmp_path, make_config):
    publish_day(file_state, tmp_path)
    out = io.StringIO()

    Runner(make_config(file_state), progress_out=out).update()

    assert "5/5 ops" in out.getvalue()


def test_version_on_the_command_line():
    shown = dms_update("--version")

    assert shown.returncode == 0
    assert shown.stdout.strip() == f"dms-update {version()}"
