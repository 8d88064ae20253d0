"""The `dms-update` command line: commands, the original tool's config and flags, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dmsupdate.agent.config import Config
from dmsupdate.agent.status import RunLock
from tests.agent.conftest import agent_env, graph_triples, quad, store_quads, ttl

G = "http://example.org/graph/g"


def dms_update(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = agent_env()
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "dmsupdate.agent", *args], capture_output=True, text=True, env=env, timeout=120
    )


def write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def embedded_config(state, tmp_path: Path, **extra) -> dict:
    data = {
        "s3root": state.root,
        "dblocation": str(tmp_path / "db"),
        "dbname": "DS-DB",
        "logArea": str(tmp_path / "log"),
        "lock_timeout": 0.3,
    }
    if state.endpoint:
        data["s3endpoint"] = state.endpoint
    data.update(extra)
    return data


def test_plan_update_and_status_on_the_command_line(state, tmp_path):
    image = state.publish_image(0, [], tmp_path)
    add = state.publish(10, "add", ttl("ex:a ex:p ex:o ."), arg=G, fmt="ttl")
    path = write_config(tmp_path, embedded_config(state, tmp_path))

    plan = dms_update("--config", str(path), "plan", "--json")
    update = dms_update("--config", str(path), "update")
    status = dms_update("--config", str(path), "status")

    assert plan.returncode == 0, plan.stderr
    entries = json.loads(plan.stdout)
    assert [e["key"] for e in entries] == [image, add]
    assert set(entries[1]) == {"op", "key", "effective", "label", "graph", "component", "format", "skip"}
    assert entries[1]["graph"] == G and entries[1]["skip"] is None
    assert update.returncode == 0, update.stderr
    assert json.loads(update.stdout)["applied"] == 2
    shown = json.loads(status.stdout)
    assert shown["effectiveDate"] == "2016-01-15/04-00-10-000000000" and shown["running"] is False
    assert shown["lastSucceeded"] is True and shown["recent"] == [add]


def test_plan_text_says_why_an_entry_is_skipped(file_state, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    first = file_state.publish(10, "replace", ttl("ex:a ex:p ex:o ."), arg=G, fmt="ttl")
    file_state.publish(20, "drop", arg=G)
    path = write_config(tmp_path, embedded_config(file_state, tmp_path))

    out = dms_update("--config", str(path), "plan")

    line = next(line for line in out.stdout.splitlines() if first in line)
    assert "skip: superseded by drop of the same graph" in line


def test_original_config_status_and_flags_work_unchanged(file_state, tmp_path, oxigraph_server):
    """The original tool's config.json (Fuseki-style service URL) and status.json, with --config= and --perform."""
    log_area = tmp_path / "log"
    log_area.mkdir()
    (log_area / "status.json").write_text(
        json.dumps({"effectiveDate": "2016-01-15-04-00-05-000000000", "recent": []})
    )
    file_state.publish(
        1, "update", "INSERT DATA { <http://example.org/old> <http://example.org/p> 1 }", fmt="ru"
    )
    new = file_state.publish(
        10, "update", "INSERT DATA { <http://example.org/new> <http://example.org/p> 2 }", fmt="ru"
    )
    path = write_config(
        tmp_path,
        {
            "s3root": file_state.root,
            "dblocation": str(tmp_path / "db"),
            "dbname": "DS-DB",
            "service": f"{oxigraph_server}/",
            "logArea": str(log_area),
        },
    )

    plan = dms_update(f"--config={path}", "--plan")
    perform = dms_update(f"--config={path}", "--perform")

    assert plan.returncode == 0, plan.stderr
    assert [line.split()[-1] for line in plan.stdout.splitlines()] == [new]
    assert perform.returncode == 0, perform.stderr
    assert json.loads(perform.stdout)["recent"] == [new]
    import requests

    rows = requests.get(
        f"{oxigraph_server}/query",
        params={"query": "SELECT ?s WHERE { ?s <http://example.org/p> ?o }"},
        headers={"Accept": "application/sparql-results+json"},
        timeout=10,
    ).json()["results"]["bindings"]
    assert [r["s"]["value"] for r in rows] == ["http://example.org/new"]


def test_config_comes_from_the_environment_variable(file_state, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    path = write_config(tmp_path, embedded_config(file_state, tmp_path))
    out = dms_update("plan", env_extra={"DMS_UPDATE_CONFIG": str(path)})
    assert out.returncode == 0, out.stderr
    assert "image" in out.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, ["cannot read"]),
        ("{not json", ["is not valid JSON"]),
        ("[1, 2]", ["must hold a JSON object"]),
        (
            json.dumps({"s3root": "ftp://x", "window_hours": -1, "controlplane": {"url": "x"}}),
            [
                "s3root: must be s3://",
                "dblocation: missing",
                "dbname: missing",
                "window_hours: must be a number",
                "controlplane.server",
            ],
        ),
    ],
)
def test_bad_config_files_give_one_clear_line_each_and_exit_2(tmp_path, content, expected):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)

    out = dms_update("--config", str(path), "update")

    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) >= len(expected)
    for fragment in expected:
        assert any(fragment in line for line in lines), (fragment, lines)


def test_unknown_config_keys_are_ignored(file_state, tmp_path):
    data = embedded_config(file_state, tmp_path, fuseki_heap="2g", comment="anything")
    config = Config.from_dict(data)
    assert config.dbname == "DS-DB"


def test_a_second_run_waits_then_exits_75(file_state, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    data = embedded_config(file_state, tmp_path)
    path = write_config(tmp_path, data)
    lock = RunLock(Path(data["logArea"]) / "lock")
    lock.acquire(0)
    try:
        out = dms_update("--config", str(path), "update")
        status = dms_update("--config", str(path), "status")
    finally:
        lock.release()

    assert out.returncode == 75
    assert "busy" in out.stderr and "Traceback" not in out.stderr
    assert json.loads(status.stdout)["running"] is True


def test_a_failed_run_exits_1_with_the_status(file_state, tmp_path):
    path = write_config(tmp_path, embedded_config(file_state, tmp_path))
    out = dms_update("--config", str(path), "update", "--json")
    assert out.returncode == 1
    status = json.loads(out.stdout)
    assert status["lastSucceeded"] is False and "no image or dump" in status["error"]


def test_rebuild_on_the_command_line_reinstalls_the_newest_image(file_state, tmp_path):
    file_state.publish_image(0, [quad("one", "p", "o", G)], tmp_path)
    data = embedded_config(file_state, tmp_path)
    path = write_config(tmp_path, data)
    assert dms_update("--config", str(path), "update").returncode == 0
    file_state.publish_image(50, [quad("two", "p", "o", G)], tmp_path)

    out = dms_update("--config", str(path), "rebuild")

    assert out.returncode == 0, out.stderr
    assert graph_triples(store_quads(Path(data["dblocation"]) / "DS-DB"), G) == {
        "<http://example.org/two> <http://example.org/p> <http://example.org/o>"
    }


def test_serve_and_watch_run_from_the_command_line(file_state, tmp_path):
    import time

    import requests

    from tests.conftest import free_port, wait_for_port

    file_state.publish_image(0, [], tmp_path)
    add = file_state.publish(10, "add", ttl("ex:a ex:p ex:o ."), arg=G, fmt="ttl")
    data = embedded_config(file_state, tmp_path, agent_token="tok")
    path = write_config(tmp_path, data)
    port = free_port()
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dmsupdate.agent",
            "--config",
            str(path),
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        env=agent_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        # update_on_start (the default): serve runs one update as it starts, unasked.
        deadline = time.monotonic() + 60
        status: dict = {}
        while time.monotonic() < deadline:
            status = requests.get(
                f"http://127.0.0.1:{port}/status", headers={"Authorization": "Bearer tok"}, timeout=10
            ).json()
            if status.get("recent") == [add] and not status.get("running"):
                break
            time.sleep(0.1)
    finally:
        serve.terminate()
        serve.wait(10)
    assert status.get("recent") == [add] and status.get("lastSucceeded") is True

    later = file_state.publish(20, "add", ttl("ex:b ex:p ex:o ."), arg=G, fmt="ttl")
    watch = subprocess.Popen(
        [sys.executable, "-m", "dmsupdate.agent", "--config", str(path), "watch", "--interval", "0.2"],
        env=agent_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        recent: list[str] = []
        while time.monotonic() < deadline and later not in recent:
            time.sleep(0.1)
            try:
                recent = json.loads((Path(data["logArea"]) / "status.json").read_text())["recent"]
            except (OSError, ValueError, KeyError):
                recent = []
    finally:
        watch.terminate()
        watch.wait(10)
    assert later in recent
