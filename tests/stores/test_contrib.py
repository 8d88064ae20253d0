"""contrib/: every sample config loads as documented; the Fuseki TDB2 hook's steps (with stand-in commands).

Fuseki itself cannot run on this machine (it is not packaged for it, and Debian's
Jena 4.5 fails to start on its Java), so the Fuseki hook is run here with
stand-ins for `tdb2.tdbloader` and the stop/start commands that record what
they were asked: the order of the steps, the folders, and what a failed load
leaves. The Virtuoso hook runs against a real Virtuoso in test_virtuoso.py.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest

from dmsupdate.agent.config import Config

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"


@pytest.mark.parametrize(
    ("store", "endpoints", "scheme"),
    [
        (
            "virtuoso",
            (
                "http://127.0.0.1:8890/sparql-auth",
                "http://127.0.0.1:8890/sparql-auth",
                "http://127.0.0.1:8890/sparql-graph-crud-auth",
            ),
            "digest",
        ),
        (
            "fuseki",
            (
                "http://127.0.0.1:3030/ds/query",
                "http://127.0.0.1:3030/ds/update",
                "http://127.0.0.1:3030/ds/data",
            ),
            "basic",
        ),
        (
            "oxigraph",
            ("http://127.0.0.1:7878/query", "http://127.0.0.1:7878/update", "http://127.0.0.1:7878/store"),
            None,
        ),
        (
            "graphdb",
            (
                "http://127.0.0.1:7200/repositories/ds",
                "http://127.0.0.1:7200/repositories/ds/statements",
                "http://127.0.0.1:7200/repositories/ds/rdf-graphs/service",
            ),
            "basic",
        ),
    ],
)
def test_sample_configs_load_with_their_documented_endpoints(store, endpoints, scheme, tmp_path):
    data = json.loads((CONTRIB / store / "config.json").read_text())
    if "auth" in data:
        secret = tmp_path / "password"
        secret.write_text("a-password\n")
        data["auth"]["password_file"] = str(secret)
    config = Config.from_dict(data)
    assert config.endpoints() == endpoints
    assert (config.auth.scheme if config.auth else None) == scheme
    assert config.verify == "counts"


def fuseki_hook(tmp_path: Path, loader_fails: bool = False) -> tuple[subprocess.CompletedProcess, Path, Path]:
    dblocation = tmp_path / "databases"
    (dblocation / "ds").mkdir(parents=True)
    (dblocation / "ds" / "old-data").write_text("old")
    calls = tmp_path / "calls"
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    loader = stubs / "loader"
    loader.write_text(
        "#!/bin/sh\n"
        'n=$(gzip -dc "$3" | wc -l)\n'
        f'echo "load $* $n" >> {calls}\n'
        + ("exit 4\n" if loader_fails else 'mkdir -p "$2" && echo new > "$2/new-data"\n')
    )
    loader.chmod(0o755)
    dump = tmp_path / "dump.nq.gz"
    dump.write_bytes(
        gzip.compress(b"<urn:s> <urn:p> <urn:o> <urn:g> .\n<urn:s> <urn:p> <urn:o2> <urn:g> .\n")
    )
    env = dict(
        os.environ,
        TDB2_LOADER=str(loader),
        FUSEKI_STOP=f"echo stop >> {calls}",
        FUSEKI_START=f"echo start $(ls ds) >> {calls}",
    )
    done = subprocess.run(
        [str(CONTRIB / "fuseki" / "install_dump"), f"file://{dump}", "ds"],
        cwd=dblocation,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, dblocation, calls


def test_fuseki_hook_loads_beside_the_live_database_then_stops_swaps_and_starts(tmp_path):
    done, dblocation, calls = fuseki_hook(tmp_path)

    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        "load --loc .ds.incoming .ds.dump.nq.gz 2",
        "stop",
        "start new-data",
    ]
    assert sorted(p.name for p in dblocation.iterdir()) == ["ds"]
    assert (dblocation / "ds" / "new-data").read_text() == "new\n"


def test_fuseki_hook_whose_load_fails_leaves_the_server_and_its_database_alone(tmp_path):
    done, dblocation, calls = fuseki_hook(tmp_path, loader_fails=True)

    assert done.returncode == 4
    assert calls.read_text().splitlines() == ["load --loc .ds.incoming .ds.dump.nq.gz 2"]
    assert sorted(p.name for p in dblocation.iterdir()) == ["ds"]
    assert (dblocation / "ds" / "old-data").read_text() == "old"
