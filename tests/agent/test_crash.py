"""kill -9 during a replay, then resume: the embedded store equals a clean replay (exactly once)."""

from __future__ import annotations

import gc
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyoxigraph as ox
import pytest

from dmsupdate.agent.runner import Runner
from tests.agent.conftest import agent_env, quad, ttl

COUNTER = "http://example.org/counter"


def publish_history(state, tmp_path: Path, count: int) -> None:
    """An image and `count` mixed updates, several of which would show if applied twice."""
    state.publish_image(
        0,
        [
            quad(
                "counter",
                "n",
                ox.Literal("0", datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer")),
            )
        ],
        tmp_path,
    )
    for i in range(1, count + 1):
        graph = f"http://example.org/graph/{i % 5}"
        kind = i % 6
        if kind == 0:
            # Not idempotent: applying it twice counts twice.
            state.publish(
                i,
                "update",
                f"DELETE {{ <{COUNTER}> <http://example.org/n> ?n }} INSERT {{ <{COUNTER}> <http://example.org/n> ?m }} WHERE {{ <{COUNTER}> <http://example.org/n> ?n BIND(?n + 1 AS ?m) }}",
                fmt="ru",
            )
        elif kind == 1:
            # Blank nodes: applying it twice adds a second node.
            rows = "\n".join(f'[] ex:item "{i}-{j}" .' for j in range(20))
            state.publish(i, "add", ttl(rows), arg=graph, fmt="ttl.gz")
        elif kind == 2:
            rows = "".join(
                f'<http://example.org/r{i}-{j}> <http://example.org/p> "{j}" .\n' for j in range(30)
            )
            state.publish(i, "replace", rows, arg=graph, fmt="nt")
        elif kind == 3:
            state.publish(
                i,
                "postproc",
                f"INSERT {{ <http://example.org/pp> <http://example.org/seen> ?n }} WHERE {{ <{COUNTER}> <http://example.org/n> ?n }}",
                arg=f"c{i % 3}",
                fmt="ru",
            )
        elif kind == 4:
            state.publish(i, "drop", arg=f"http://example.org/graph/{(i + 2) % 5}")
        else:
            state.publish(i, "add", ttl(f"ex:s{i} ex:p ex:o{i} ."), arg=graph, fmt="ttl")


def canonical(db_dir: Path) -> set[str]:
    """All quads (ledger included), blank nodes canonicalised so two stores compare."""
    store = ox.Store.read_only(str(db_dir))
    dataset = ox.Dataset(list(store))
    del store
    gc.collect()
    dataset.canonicalize(ox.CanonicalizationAlgorithm.UNSTABLE)
    return {str(q) for q in dataset}


@pytest.mark.slow
def test_kill_9_during_replay_then_resume_equals_a_clean_replay(file_state, make_config, tmp_path):
    publish_history(file_state, tmp_path, 60)
    clean = make_config(
        file_state, dblocation=str(tmp_path / "clean-db"), logArea=str(tmp_path / "clean-log")
    )
    assert Runner(clean).update()["lastSucceeded"] is True
    expected = canonical(clean.db_dir)

    crashy = make_config(
        file_state, dblocation=str(tmp_path / "crash-db"), logArea=str(tmp_path / "crash-log")
    )
    config_path = tmp_path / "crash.json"
    config_path.write_text(
        json.dumps(
            {
                "s3root": file_state.root,
                "dblocation": crashy.dblocation,
                "dbname": crashy.dbname,
                "logArea": crashy.log_area,
            }
        )
    )
    rng = random.Random(7)
    kills = 0
    # Ops applied by each run before the kill: the first kill lands in the image install.
    for target in (0, 2, 4, 1, 5, 3, 6, 2):
        crashy.status_path.unlink(missing_ok=True)  # derived from the ledger; rewritten by each run
        proc = subprocess.Popen(
            [sys.executable, "-m", "dmsupdate.agent", "--config", str(config_path), "update", "--json"],
            env=agent_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                status = json.loads(crashy.status_path.read_text())
            except (OSError, ValueError):
                status = {}
            if status.get("running") and status.get("applied", 0) >= target:
                time.sleep(rng.uniform(0, 0.05))  # land anywhere inside the next operation
                break
            time.sleep(0.001)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(30)

    final = Runner(crashy).update()

    assert kills >= 6
    assert final["lastSucceeded"] is True, final
    assert canonical(crashy.db_dir) == expected
    assert not list(crashy.status_path.parent.glob(".status-*"))  # no temp files left by the kills
