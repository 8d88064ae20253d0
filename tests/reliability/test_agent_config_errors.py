"""Every key of the agent's config table (DESIGN §5), missing or wrong: one clear line naming it, exit 2.

Nothing is written before the config is valid: no log area, no lock, no
database directory.
"""

from __future__ import annotations

import json

import pytest

from dmsupdate.agent.cli import main


def valid_config(tmp_path) -> dict:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return {
        "s3root": f"file://{state}",
        "dblocation": str(tmp_path / "db"),
        "dbname": "DS-DB",
        "logArea": str(tmp_path / "log"),
        "bindir": str(tmp_path / "bin"),
    }


class _Missing:
    """Marks a key left out of the config (a stable repr keeps test ids equal across xdist workers)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()

# (key, bad value or MISSING, fragment of the one line expected, extra keys making the case meaningful)
CASES = [
    ("s3root", MISSING, "s3root: missing (required)", {}),
    ("s3root", 42, "s3root: must be a non-empty string", {}),
    ("s3root", "s3://", "s3root: s3:// roots need a bucket", {}),
    ("s3root", "file:relative/state", "s3root: file:// roots need an absolute path", {}),
    ("s3root", "file://relative/state", "s3root: file:// roots need an absolute path", {}),
    ("s3root", "https://bucket.example/state", "s3root: must be s3://BUCKET/PREFIX", {}),
    ("s3endpoint", "localhost:9000", "s3endpoint: must be an http:// or https:// URL", {}),
    ("s3endpoint", ["http://x"], "s3endpoint: must be a non-empty string", {}),
    ("dblocation", MISSING, "dblocation: missing (required)", {}),
    ("dblocation", 7, "dblocation: must be a non-empty string", {}),
    ("dbname", MISSING, "dbname: missing (required)", {}),
    ("dbname", "../elsewhere", "dbname: must be a plain directory name", {}),
    ("dbname", "", "dbname: must be a non-empty string", {}),
    ("service", "fuseki:3030/ds/", "service: must be an http:// or https:// URL", {}),
    ("query_endpoint", 5, "query_endpoint: must be a non-empty string", {"service": "http://h/ds/"}),
    ("update_endpoint", "http://h/update", "update_endpoint: set service or gsp_endpoint too", {}),
    ("gsp_endpoint", "http://h/store", "gsp_endpoint: set service or update_endpoint too", {}),
    ("gsp_endpoint", "store", "gsp_endpoint: must be an http:// or https:// URL", {"service": "http://h/"}),
    ("logArea", "", "logArea: must be a non-empty string", {}),
    ("bindir", False, "bindir: must be a non-empty string", {}),
    ("window_hours", "24", "window_hours: must be a number > 0", {}),
    ("window_hours", 0, "window_hours: must be a number > 0", {}),
    ("window_hours", True, "window_hours: must be a number > 0", {}),
    ("controlplane", "http://cp", "controlplane: must be an object {url, server, token}", {}),
    ("controlplane", {"url": "http://cp", "server": "a"}, "controlplane.token: missing", {}),
    (
        "controlplane",
        {"url": "cp.example", "server": "a", "token": "t"},
        "controlplane.url: must be an http(s) URL",
        {},
    ),
    ("agent_token", 123, "agent_token: must be a non-empty string", {}),
    ("agent_token", "  ", "agent_token: must be a non-empty string", {}),
]


@pytest.mark.parametrize(
    ("key", "value", "expected", "extra"),
    CASES,
    ids=[f"{c[0]}={'missing' if c[1] is MISSING else repr(c[1])}" for c in CASES],
)
@pytest.mark.parametrize("command", ["update", "plan"])
def test_a_missing_or_wrong_config_key_gives_one_line_naming_it_and_exit_2(
    tmp_path, capsys, key, value, expected, extra, command
):
    data = {**valid_config(tmp_path), **extra}
    if value is MISSING:
        data.pop(key)
    else:
        data[key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))

    code = main(["--config", str(path), command])

    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0] == f"dms-update: {path}: {lines[0].split(': ', 2)[2]}"
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "log").exists() and not (tmp_path / "db").exists(), "something was written"


def test_every_problem_of_one_file_is_listed_one_per_line(tmp_path, capsys):
    data = valid_config(tmp_path)
    data.update(s3root="ftp://x", dbname="a/b", window_hours=-2, agent_token=1)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))

    code = main(["--config", str(path), "update"])

    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert [line.split(": ", 2)[2].split(":")[0] for line in lines] == [
        "s3root",
        "dbname",
        "window_hours",
        "agent_token",
    ]


def test_the_valid_base_config_is_accepted(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(valid_config(tmp_path)))

    code = main(["--config", str(path), "status"])

    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["lastSucceeded"] is None


@pytest.mark.parametrize("bind", ["0.0.0.0:8586", "[::]:8586", "192.0.2.10:8586", "agent.example:8586"])
def test_serve_without_an_agent_token_refuses_a_reachable_address(tmp_path, capsys, bind):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(valid_config(tmp_path)))

    code = main(["--config", str(path), "serve", "--bind", bind])

    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and "needs agent_token in the config" in lines[0], lines
