"""Fixtures for the agent: a state root to publish into, images and dumps, agent configs."""

from __future__ import annotations

import gc
import gzip
import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest

from dmsupdate.agent.config import Config
from dmsupdate.agent.images import LEDGER_GRAPH, pack_image, write_dump
from dmsupdate.agent.runner import Runner
from dmsupdate.agent.serve import make_server
from dmsupdate.state.keys import EffectiveTime, format_key
from dmsupdate.state.stores import ObjectStore, open_store

REPO = Path(__file__).resolve().parents[2]
DAY0 = "2016-01-15T04:00:00Z"


def at(seconds: float, start: str = DAY0) -> EffectiveTime:
    """An effective time `seconds` after the start of the test timeline."""
    base = EffectiveTime.parse_text(start)
    return EffectiveTime(base.nanos + int(seconds * 1_000_000_000))


def ttl(*lines: str) -> str:
    """A Turtle document with the ex: prefix."""
    return "@prefix ex: <http://example.org/> .\n" + "\n".join(lines) + "\n"


class StateRoot:
    """A state root with a helper to publish objects the way publishers do."""

    def __init__(self, root: str, endpoint: str | None) -> None:
        self.root = root
        self.endpoint = endpoint
        self.store: ObjectStore = open_store(root, endpoint)

    def publish(
        self,
        seconds: float,
        op: str,
        body: bytes | str = b"",
        arg: str | None = None,
        fmt: str | None = None,
        label: str = "test",
    ) -> str:
        data = body.encode() if isinstance(body, str) else body
        if fmt and fmt.endswith(".gz") and op != "dump":
            data = gzip.compress(data)
        key = format_key(at(seconds), label, op, arg, fmt)
        self.store.put_new(key, io.BytesIO(data), len(data))
        return key

    def publish_image(self, seconds: float, quads: list[ox.Quad], tmp: Path) -> str:
        store_dir = tmp / f"image-src-{seconds}"
        store = ox.Store(str(store_dir))
        store.extend(quads)
        store.flush()
        del store
        gc.collect()
        buf = io.BytesIO()
        pack_image(store_dir, buf)
        return self.publish(seconds, "image", buf.getvalue(), fmt="tgz")

    def publish_dump(self, seconds: float, quads: list[ox.Quad]) -> str:
        store = ox.Store()
        store.extend(quads)
        buf = io.BytesIO()
        write_dump(store, buf)
        return self.publish(seconds, "dump", buf.getvalue(), fmt="nq.gz")


@pytest.fixture
def state(any_root) -> StateRoot:
    """A fresh state root, once on file:// and once on the moto server."""
    return StateRoot(*any_root)


@pytest.fixture
def file_state(file_root) -> StateRoot:
    """A fresh local-directory state root."""
    return StateRoot(*file_root)


@pytest.fixture
def serve():
    """Start `serve` for a config in a thread; yield a function returning its base URL."""
    servers = []

    def start(config) -> str:
        server = make_server(Runner(config), "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def make_config(tmp_path) -> Callable[..., Config]:
    """Build an agent config for a state root with its folders under tmp_path."""

    def build(state: StateRoot, **extra: Any) -> Config:
        data: dict[str, Any] = {
            "s3root": state.root,
            "dblocation": str(tmp_path / "db"),
            "dbname": "DS-DB",
            "logArea": str(tmp_path / "log"),
            "bindir": str(tmp_path / "bin"),
            "lock_timeout": 0.5,
        }
        if state.endpoint:
            data["s3endpoint"] = state.endpoint
        data.update(extra)
        return Config.from_dict({k: v for k, v in data.items() if v is not None})

    return build


def ex(local: str) -> ox.NamedNode:
    return ox.NamedNode(f"http://example.org/{local}")


def quad(s: str, p: str, o: str | ox.Literal, g: str | None = None) -> ox.Quad:
    obj = o if isinstance(o, ox.Literal) else ex(o)
    graph = ox.NamedNode(g) if g else ox.DefaultGraph()
    return ox.Quad(ex(s), ex(p), obj, graph)


def store_quads(db_dir: Path, with_ledger: bool = False) -> set[str]:
    """Every quad of a closed embedded store, as N-Quads lines (the ledger graph left out)."""
    store = ox.Store.read_only(str(db_dir))
    lines = {
        f"{q.subject} {q.predicate} {q.object} {q.graph_name}"
        for q in store
        if with_ledger or q.graph_name != LEDGER_GRAPH
    }
    del store
    gc.collect()
    return lines


def graph_triples(lines: set[str], graph: str) -> set[str]:
    """The lines of one named graph, without the graph name."""
    suffix = f" <{graph}>"
    return {line[: -len(suffix)] for line in lines if line.endswith(suffix)}


def agent_env() -> dict[str, str]:
    """Environment for agent subprocesses: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
