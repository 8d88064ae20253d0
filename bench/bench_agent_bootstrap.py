"""Agent bootstrap from a 1,000,000-quad `nq.gz` dump vs pyoxigraph's `bulk_load` of the same file.

Each side runs in its own subprocess, timed from its call to its return (imports
outside the clock), its peak memory the process's own `VmHWM` read at its end: the raw side streams the gzip file into `Store.bulk_load`; the agent runs
`Runner.update()` on a `file://` root whose only object is that dump (listing,
verified streaming download, bulk load into a fresh store beside the
database, ledger, swap, status).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench.harness import measure_in_subprocess
from bench.report import Outcome, judged, run_standalone

QUADS = 1_000_000
ROUNDS = 3
REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / "results"
DUMP_KEY = "images/2024-03-01/00-00-00-000000000/bench_dump.nq.gz"

RAW = """
import gzip, json, sys, time
import pyoxigraph as ox
from bench.report import vmhwm_mb
started = time.perf_counter()
store = ox.Store(sys.argv[2])
with gzip.open(sys.argv[1], "rb") as stream:
    store.bulk_load(input=stream, format=ox.RdfFormat.N_QUADS)
del store
print(json.dumps({"seconds": time.perf_counter() - started,
                  "maxrss_mb": vmhwm_mb()}))
"""

AGENT = """
import json, sys, time
from bench.report import vmhwm_mb
from dmsupdate.agent.config import Config
from dmsupdate.agent.runner import Runner
config = Config.from_dict({"s3root": sys.argv[1], "dblocation": sys.argv[2], "dbname": "store",
                           "logArea": sys.argv[2] + "/log"})
started = time.perf_counter()
status = Runner(config).update()
assert status["lastSucceeded"], status
print(json.dumps({"seconds": time.perf_counter() - started,
                  "maxrss_mb": vmhwm_mb()}))
"""


def make_dump(path: Path) -> None:
    """A deterministic dump: a million quads over a default graph and 50 named graphs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", compresslevel=1, encoding="utf-8") as out:
        for i in range(QUADS):
            graph = "" if i % 3 == 0 else f" <http://example.org/graph/{i % 50}>"
            out.write(
                f'<http://example.org/s{i // 10}> <http://example.org/p{i % 10}> "value {i}"{graph} .\n'
            )
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> Outcome:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=ROUNDS)
    args = parser.parse_args(argv or [])
    dump = CACHE / "dump-1m.nq.gz"
    if not dump.exists():
        print("generating the 1,000,000-quad dump (cached in bench/results/)", flush=True)
        make_dump(dump)
    base = Path(tempfile.mkdtemp(prefix="bench-bootstrap-", dir=os.environ.get("BENCH_DIR")))
    try:
        root = base / "state"
        (root / DUMP_KEY).parent.mkdir(parents=True)
        shutil.copy(dump, root / DUMP_KEY)
        agent: list[dict[str, float]] = []
        raw: list[dict[str, float]] = []
        details = ["| round | agent | bulk_load | VmHWM agent / bulk_load |", "|---|---|---|---|"]
        for n in range(args.runs):
            for side in ["raw", "agent"] if n % 2 == 0 else ["agent", "raw"]:
                target = base / f"{side}-{n}"
                if side == "raw":
                    raw.append(measure_in_subprocess(RAW, str(root / DUMP_KEY), str(target)))
                else:
                    agent.append(measure_in_subprocess(AGENT, f"file://{root}", str(target)))
                shutil.rmtree(target, ignore_errors=True)
            line = (
                f"| {n + 1} | {agent[-1]['seconds']:.1f} s | {raw[-1]['seconds']:.1f} s | "
                f"{agent[-1]['maxrss_mb']:.0f} / {raw[-1]['maxrss_mb']:.0f} MB |"
            )
            details.append(line)
            print(line, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    a = statistics.median(r["seconds"] for r in agent)
    r = statistics.median(r["seconds"] for r in raw)
    targets = [
        judged(
            f"agent bootstrap from a {QUADS:,}-quad dump vs bulk_load",
            "x",
            [x["seconds"] / y["seconds"] for x, y in zip(agent, raw, strict=True)],
            "<= 1.1x",
            at_most=1.1,
            note=f"agent {a:.1f} s against {r:.1f} s",
        ),
        judged(
            "agent bootstrap peak memory over bulk_load's (VmHWM)",
            "MB",
            [x["maxrss_mb"] - y["maxrss_mb"] for x, y in zip(agent, raw, strict=True)],
            "<= +100 MB",
            at_most=100,
        ),
    ]
    return Outcome(targets, details, args.runs)


if __name__ == "__main__":
    raise SystemExit(run_standalone("bench_agent_bootstrap", main, sys.argv[1:]))
