"""The agent against a SPARQL endpoint (`oxigraph serve`) that goes down or throttles mid-run.

The run stops at the operation that met the fault, names it in status.json,
and applies nothing after it; once the endpoint is back the next run
catches up and the endpoint holds exactly what a clean replay gives (the
counters show that no update was applied twice).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest
import requests

from dmsupdate.agent.runner import Runner
from dmsupdate.agent.sparql import SqliteLedger
from tests.agent.conftest import StateRoot
from tests.conftest import free_port, wait_for_port
from tests.reliability.conftest import agent_config, canonical, publish_small_history, store_snapshot
from tests.reliability.faultproxy import FaultProxy, Rule


class Endpoint:
    """An `oxigraph serve` process that can be stopped and started again on the same data and port."""

    def __init__(self, location: Path) -> None:
        self.location = location
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        exe = shutil.which("oxigraph") or str(Path(sys.executable).parent / "oxigraph")
        self.proc = subprocess.Popen(
            [exe, "serve", "--location", str(self.location), "--bind", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)
            self.proc = None

    def quads(self) -> set[str]:
        r = requests.get(
            f"http://127.0.0.1:{self.port}/store", headers={"Accept": "application/n-quads"}, timeout=30
        )
        r.raise_for_status()
        return canonical(list(ox.parse(r.content, ox.RdfFormat.N_QUADS)))


@pytest.fixture
def endpoint(tmp_path) -> Iterator[Endpoint]:
    server = Endpoint(tmp_path / "oxigraph")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def endpoint_proxy(endpoint) -> Iterator[FaultProxy]:
    proxy = FaultProxy(endpoint.port)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def history(file_root, tmp_path) -> tuple[StateRoot, list[str], set[str]]:
    """(state root, update keys, the data quads of a clean embedded replay)."""
    state = StateRoot(*file_root)
    keys = publish_small_history(state)
    clean = agent_config(state.root, tmp_path / "clean")
    assert Runner(clean).update()["lastSucceeded"] is True
    return state, keys, store_snapshot(clean.db_dir)[0]


def sparql_agent(state: StateRoot, proxy: FaultProxy, home: Path):
    return agent_config(
        state.root,
        home,
        query_endpoint=f"{proxy.url}/query",
        update_endpoint=f"{proxy.url}/update",
        gsp_endpoint=f"{proxy.url}/store",
    )


def applied_keys(config) -> set[str]:
    ledger = SqliteLedger(config.ledger_path)
    try:
        return set(ledger.state().applied)
    finally:
        ledger.close()


def test_endpoint_going_down_mid_run_stops_at_that_key_and_the_next_run_catches_up(
    history, endpoint, endpoint_proxy, tmp_path
):
    state, keys, clean = history
    # The first SPARQL update (keys[2]) passes; the endpoint dies on the next one.
    endpoint_proxy.add(Rule(match="POST /update", action="pass", skip=1, before=endpoint.stop))
    config = sparql_agent(state, endpoint_proxy, tmp_path / "agent")

    status = Runner(config).update()

    assert status["lastSucceeded"] is False
    assert status["failedKey"] == keys[3], status
    assert "cannot reach" in status["error"] and keys[3] in status["error"], status["error"]
    assert applied_keys(config) == set(keys[:3])

    # Still down: the run fails again at the same key and records nothing new.
    endpoint_proxy.clear()
    status = Runner(config).update()
    assert status["failedKey"] == keys[3] and applied_keys(config) == set(keys[:3])

    endpoint.start()
    status = Runner(config).update()
    assert status["lastSucceeded"] is True, status
    assert endpoint.quads() == clean


def test_endpoint_answering_503_fails_the_key_with_the_reason_and_a_later_run_succeeds(
    history, endpoint, endpoint_proxy, tmp_path
):
    state, keys, clean = history
    endpoint_proxy.add(Rule(match="PUT /store?graph=", action="status", status=503))
    config = sparql_agent(state, endpoint_proxy, tmp_path / "agent")
    runner = Runner(config)

    status = runner.update()

    # keys[1] is the first replace (a Graph Store PUT).
    assert status["lastSucceeded"] is False and status["failedKey"] == keys[1], status
    assert "HTTP 503" in status["error"], status["error"]
    assert runner.throttled
    assert applied_keys(config) == {keys[0]}

    endpoint_proxy.clear()
    status = Runner(config).update()
    assert status["lastSucceeded"] is True, status
    assert endpoint.quads() == clean
