"""Replay of 200 updates (~1,000 quads each, mixed ops) into the embedded store, vs pyoxigraph alone.

Both sides start from an empty on-disk store and perform the same operations
(the agent's plan after pruning) from the same files; the raw side reads each
file, decompresses it and calls `load` / `remove_graph` / `update` directly.
The agent adds what it needs to be correct: listing, key parsing, verified
downloads, the in-store ledger and status.json after every operation.
"""

from __future__ import annotations

import gc
import gzip
import io
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pyoxigraph as ox

from dmsupdate.agent.config import Config
from dmsupdate.agent.images import pack_image
from dmsupdate.agent.runner import Runner
from dmsupdate.state.keys import EffectiveTime, format_key
from dmsupdate.state.plan import PlanEntry
from dmsupdate.state.stores import open_store

UPDATES = 200
QUADS = 1000
ROUNDS = 7
START = EffectiveTime.parse_text("2024-03-01T00:00:00Z")
FORMATS = {"ttl": ox.RdfFormat.TURTLE, "nt": ox.RdfFormat.N_TRIPLES}


def at(i: int) -> EffectiveTime:
    return EffectiveTime(START.nanos + i * 1_000_000_000)


def triples(i: int) -> str:
    return "".join(
        f'<http://example.org/u{i}/s{j}> <http://example.org/p{j % 7}> "value {i} {j}" .\n'
        for j in range(QUADS)
    )


def publish(root: Path, key: str, data: bytes) -> None:
    store = open_store(f"file://{root}")
    store.put_new(key, io.BytesIO(data), len(data))


def build_workload(root: Path, scratch: Path) -> None:
    """An empty image at t0, then the mixed updates."""
    rng = random.Random(42)
    empty = scratch / "empty-store"
    store = ox.Store(str(empty))
    store.flush()
    del store
    gc.collect()
    buf = io.BytesIO()
    pack_image(empty, buf)
    publish(root, format_key(at(0), "bench", "image"), buf.getvalue())
    for i in range(1, UPDATES + 1):
        graph = f"http://example.org/graph/{rng.randrange(40)}"
        kind = i % 10
        if kind <= 4:
            fmt = "ttl" if kind % 2 else "nt.gz"
            body = triples(i).encode()
            data = gzip.compress(body, 1) if fmt.endswith(".gz") else body
            publish(root, format_key(at(i), "bench", "add", graph, fmt), data)
        elif kind <= 6:
            publish(root, format_key(at(i), "bench", "replace", graph, "nt"), triples(i).encode())
        elif kind == 7:
            publish(root, format_key(at(i), "bench", "drop", graph), b"")
        else:
            text = f"INSERT DATA {{ GRAPH <{graph}> {{\n{triples(i)}}} }}"
            publish(root, format_key(at(i), "bench", "update", None, "ru"), text.encode())


def agent_config(root: Path, work: Path) -> Config:
    return Config.from_dict(
        {
            "s3root": f"file://{root}",
            "dblocation": str(work / "db"),
            "dbname": "store",
            "logArea": str(work / "log"),
        }
    )


def run_agent(root: Path, work: Path) -> tuple[float, float]:
    """Wall and CPU time of the agent's replay (its bootstrap from the empty image happens before)."""
    runner = Runner(agent_config(root, work))
    started, cpu = time.perf_counter(), time.process_time()
    status = runner.update()
    elapsed = (time.perf_counter() - started, time.process_time() - cpu)
    assert status["lastSucceeded"], status
    return elapsed


def run_raw(root: Path, work: Path, entries: list[PlanEntry]) -> tuple[float, float]:
    """Wall and CPU time of pyoxigraph alone doing the same operations from the same files."""
    started, cpu = time.perf_counter(), time.process_time()
    store = ox.Store(str(work / "raw"))
    for entry in entries:
        path = root / entry.key
        if entry.op == "drop":
            store.remove_graph(ox.NamedNode(entry.graph or ""))
            continue
        with open(path, "rb") as f:
            data = f.read()
        if entry.key.endswith(".gz"):
            data = gzip.decompress(data)
        if entry.op in ("update", "postproc"):
            store.update(data.decode())
            continue
        graph = ox.NamedNode(entry.graph or "")
        if entry.op == "replace":
            store.remove_graph(graph)
        store.load(input=data, format=FORMATS[(entry.format or "").removesuffix(".gz")], to_graph=graph)
    del store  # closing the store is part of the work (the agent closes its store too)
    gc.collect()
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    # BENCH_DIR=/dev/shm takes the disk (shared with whatever else runs) out of the comparison.
    base = Path(tempfile.mkdtemp(prefix="bench-replay-", dir=os.environ.get("BENCH_DIR")))
    try:
        agent_times: list[float] = []
        raw_times: list[float] = []
        agent_cpu: list[float] = []
        raw_cpu: list[float] = []
        for n in range(ROUNDS):
            round_dir = base / f"round-{n}"
            root = round_dir / "state"
            root.mkdir(parents=True)
            image_only = round_dir / "image-only"
            image_only.mkdir()
            build_workload(root, round_dir)
            # Bootstrap first from a root holding only the image, so the timed run is the replay alone.
            shutil.copytree(root / "images", image_only / "images")
            work = round_dir / "agent"
            boot = Runner(agent_config(image_only, work)).update()
            assert boot["lastSucceeded"], boot
            entries = [e for e in Runner(agent_config(root, work)).plan() if e.skip is None]
            sides = ["agent", "raw"] if n % 2 == 0 else ["raw", "agent"]
            for side in sides:
                if side == "agent":
                    wall, cpu = run_agent(root, work)
                    agent_times.append(wall)
                    agent_cpu.append(cpu)
                else:
                    wall, cpu = run_raw(root, round_dir, entries)
                    raw_times.append(wall)
                    raw_cpu.append(cpu)
            print(
                f"round {n + 1}: {len(entries)} ops; agent {agent_times[-1]:.2f} s, "
                f"pyoxigraph alone {raw_times[-1]:.2f} s, ratio {agent_times[-1] / raw_times[-1]:.3f}; "
                f"CPU {agent_cpu[-1]:.2f} s vs {raw_cpu[-1]:.2f} s, ratio {agent_cpu[-1] / raw_cpu[-1]:.3f}",
                flush=True,
            )
            shutil.rmtree(round_dir, ignore_errors=True)
        a, r = statistics.median(agent_times), statistics.median(raw_times)
        ratios = [x / y for x, y in zip(agent_times, raw_times, strict=True)]
        print(
            f"replay of {UPDATES} updates (~{QUADS} quads each) in {base.parent}: "
            f"median of per-round ratios {statistics.median(ratios):.3f} (target <= 1.15); "
            f"agent median {a:.2f} s, pyoxigraph alone median {r:.2f} s, ratio of medians {a / r:.3f}; "
            f"CPU time: median of per-round ratios "
            f"{statistics.median(x / y for x, y in zip(agent_cpu, raw_cpu, strict=True)):.3f}"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
