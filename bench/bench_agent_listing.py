"""Agent catch-up of 50 new keys in a root holding 20,000 older keys: ListObjectsV2 calls on a moto S3 server.

The agent lists `updates/` once, with StartAfter at the start of its late-arrival
window, so the cost does not grow with the bucket's history. The raw comparison
is a plain listing of `updates/` (what a tool without the window would do to find
new keys). Requests are counted on the server side (moto's request log). Three
runs, each a fresh agent bootstrapped from the same image catching up the same
50 keys.

    python -m bench.bench_agent_listing [--runs R]
"""

from __future__ import annotations

import argparse
import gc
import io
import logging
import shutil
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pyoxigraph as ox

from bench.report import Outcome, judged, run_standalone
from dmsupdate.agent.config import Config
from dmsupdate.agent.images import pack_image
from dmsupdate.agent.runner import Runner
from dmsupdate.state.keys import EffectiveTime, format_key
from dmsupdate.state.stores import open_store

OLD_KEYS = 20_000
NEW_KEYS = 50
PER_DAY = 100
START = EffectiveTime.parse_text("2023-01-01T00:00:00Z")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def at(seconds: float) -> EffectiveTime:
    return EffectiveTime(START.nanos + int(seconds * 1_000_000_000))


class ListRequests(logging.Handler):
    """Counts ListObjectsV2 requests in the moto server's request log (server side)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "list-type=2" in record.getMessage():
            self.count += 1


class CountingRunner(Runner):
    """A Runner that keeps the object store it used, to read its request counters."""

    def _source(self):  # type: ignore[no-untyped-def]
        self.source = super()._source()
        return self.source


def main(argv: list[str] | None = None) -> Outcome:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args(argv or []).runs
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from moto.server import ThreadedMotoServer

    seen = ListRequests()
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.handlers = [seen]
    werkzeug.propagate = False
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    base = Path(tempfile.mkdtemp(prefix="bench-listing-"))
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="state")
        root = "s3://state/dms"
        store = open_store(root, endpoint)
        step = 86400 / PER_DAY
        body = b"INSERT DATA { <http://example.org/s> <http://example.org/p> 1 }"

        def put(key: str) -> None:
            store.put_new(key, io.BytesIO(body), len(body))

        print(f"publishing {OLD_KEYS:,} older keys to the moto server", flush=True)
        old = [format_key(at(i * step), "hist", "update", None, "ru") for i in range(OLD_KEYS)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, old))
        # The server was bootstrapped from an image newer than all of them.
        img_dir = base / "img"
        s = ox.Store(str(img_dir))
        del s
        gc.collect()
        buf = io.BytesIO()
        pack_image(img_dir, buf)
        image_time = OLD_KEYS * step + 1
        data = buf.getvalue()
        store.put_new(format_key(at(image_time), "hist", "image"), io.BytesIO(data), len(data))

        def config(name: str) -> Config:
            return Config.from_dict(
                {
                    "s3root": root,
                    "s3endpoint": endpoint,
                    "dblocation": str(base / name),
                    "dbname": "store",
                    "logArea": str(base / name / "log"),
                }
            )

        assert Runner(config("boot")).update()["lastSucceeded"]
        new = [format_key(at(image_time + 10 + i), "news", "update", None, "ru") for i in range(NEW_KEYS)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, new))
        counts, agent_counts, seconds = [], [], []
        for run in range(runs):
            # Each run starts from the bootstrapped agent's state, before the 50 new keys.
            shutil.copytree(base / "boot", base / f"run-{run}")
            runner = CountingRunner(config(f"run-{run}"))
            seen.count = 0
            started = time.perf_counter()
            status = runner.update()
            seconds.append(time.perf_counter() - started)
            assert status["lastSucceeded"] and status["applied"] == NEW_KEYS, status
            counts.append(seen.count)
            agent_counts.append(runner.source.stats.list_calls)
        plain = open_store(root, endpoint)
        seen.count = 0
        started = time.perf_counter()
        listed = sum(1 for _ in plain.list("updates/"))
        plain_seconds = time.perf_counter() - started
        plain_calls = seen.count
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    details = [
        "| | ListObjectsV2 requests (server side) | time |",
        "|---|---|---|",
        *(
            f"| agent catch-up, run {n + 1} ({NEW_KEYS} new keys applied) | {c} (agent counted {a}) | {t:.2f} s |"
            for n, (c, a, t) in enumerate(zip(counts, agent_counts, seconds, strict=True))
        ),
        f"| plain listing of updates/ ({listed:,} keys) | {plain_calls} | {plain_seconds:.2f} s |",
    ]
    for line in details:
        print(line)
    targets = [
        judged(
            f"agent catch-up of {NEW_KEYS} keys among {OLD_KEYS:,}: ListObjectsV2 requests",
            "calls",
            counts,
            "<= 2",
            at_most=2,
            rule="worst",
            note=f"a plain listing takes {plain_calls}",
        )
    ]
    return Outcome(targets, details, runs)


if __name__ == "__main__":
    raise SystemExit(run_standalone("bench_agent_listing", main, sys.argv[1:]))
