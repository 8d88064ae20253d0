"""Fixtures for the fault-injection tests: an S3 server that can be stopped and restarted, proxies, histories."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest

from dmsupdate.agent.config import Config
from dmsupdate.agent.images import LEDGER_GRAPH
from tests.agent.conftest import StateRoot, file_state, make_config  # noqa: F401 - the agent's fixtures, for the hostile-input tests
from tests.conftest import free_port, wait_for_port
from tests.reliability.faultproxy import FaultProxy


class RestartableS3:
    """A moto server of this test's own: stop it and start it again on the same port, objects kept."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def restartable_s3() -> Iterator[RestartableS3]:
    s3 = RestartableS3()
    try:
        yield s3
    finally:
        s3.stop()


@pytest.fixture
def s3_proxy(restartable_s3) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the restartable S3 server."""
    proxy = FaultProxy(restartable_s3.port)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def bucket_root(restartable_s3) -> tuple[str, str]:
    """A fresh bucket on the restartable server: (root, direct endpoint)."""
    import boto3

    bucket = f"faults-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=restartable_s3.url).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/dms", restartable_s3.url


@pytest.fixture
def s3_state(bucket_root) -> StateRoot:
    """The fresh bucket as a state root publishers write to (directly, not through the proxy)."""
    return StateRoot(*bucket_root)


def agent_config(root: str, home: Path, endpoint: str | None = None, **extra: object) -> Config:
    """An agent config whose folders live under `home`."""
    data: dict[str, object] = {
        "s3root": root,
        "dblocation": str(home / "db"),
        "dbname": "DS-DB",
        "logArea": str(home / "log"),
        "bindir": str(home / "bin"),
        "lock_timeout": 0.5,
    }
    if endpoint:
        data["s3endpoint"] = endpoint
    data.update(extra)
    return Config.from_dict(data)


def store_snapshot(db_dir: Path) -> tuple[set[str], set[str]]:
    """(canonical data quads, applied keys) of a closed embedded store."""
    store = ox.Store.read_only(str(db_dir))
    quads = list(store)
    del store
    gc.collect()
    applied = {
        q.object.value
        for q in quads
        if q.graph_name == LEDGER_GRAPH and q.predicate.value == "urn:x-dms-update:applied"
    }
    dataset = ox.Dataset([q for q in quads if q.graph_name != LEDGER_GRAPH])
    dataset.canonicalize(ox.CanonicalizationAlgorithm.UNSTABLE)
    return {str(q) for q in dataset}, applied


def canonical(quads: list[ox.Quad]) -> set[str]:
    """Quads as strings with blank nodes canonicalised, so two stores compare."""
    dataset = ox.Dataset(quads)
    dataset.canonicalize(ox.CanonicalizationAlgorithm.UNSTABLE)
    return {str(q) for q in dataset}


COUNTER = "http://example.org/counter"
XSD_INTEGER = ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer")


def bump_counter(step: int) -> str:
    """A SPARQL update that shows a double application: the counter grows by `step` each time."""
    return (
        f"DELETE {{ <{COUNTER}> <http://example.org/n> ?n }} "
        f"INSERT {{ <{COUNTER}> <http://example.org/n> ?m }} "
        f"WHERE {{ <{COUNTER}> <http://example.org/n> ?n BIND(?n + {step} AS ?m) }}"
    )


def publish_small_history(state: StateRoot) -> list[str]:
    """A dump and twelve updates (counters, blank-node adds, replaces, a drop); returns the update keys."""
    from tests.agent.conftest import quad, ttl

    state.publish_dump(0, [quad("counter", "n", ox.Literal("0", datatype=XSD_INTEGER))])
    keys = []
    for i in range(1, 13):
        graph = f"http://example.org/graph/{i % 3}"
        if i % 4 == 0:
            keys.append(state.publish(i, "update", bump_counter(i), fmt="ru"))
        elif i % 4 == 1:
            rows = "\n".join(f'[] ex:item "{i}-{j}" ; ex:pad "{"x" * 40}" .' for j in range(60))
            keys.append(state.publish(i, "add", ttl(rows), arg=graph, fmt="ttl.gz"))
        elif i % 4 == 2:
            rows = "".join(
                f'<http://example.org/r{i}-{j}> <http://example.org/p> "{j}" .\n' for j in range(80)
            )
            keys.append(state.publish(i, "replace", rows, arg=graph, fmt="nt"))
        elif i == 7:
            # Graph 1's earlier writes lie behind an update (a barrier): nothing is pruned.
            keys.append(state.publish(i, "drop", arg="http://example.org/graph/1"))
        else:
            keys.append(state.publish(i, "update", bump_counter(100 * i), fmt="ru.gz"))
    return keys
