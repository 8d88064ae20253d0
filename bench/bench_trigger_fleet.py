"""Trigger-and-wait over 200 and 1,000 simulated agents: what the control plane adds to the slowest agent's time.

The agents are simulated (bench/simulated_agents.py: one process, each agent on
its own loopback port answering `POST /update?wait` and `GET /status` like
`dms-update serve`), agent i of N taking 1 + 2 i / (N - 1) s, so the slowest
agent's own time is exactly 3 s and the machine's two cores are left to the
control plane. The product side is one `update_all` job (TRIGGER_CONCURRENCY =
the number of agents) on PostgreSQL: N HTTP calls, N status reports recorded
with their lag, N update runs, the audit rows and the job's result. The raw side
is the slowest agent's own 3 s: the job cannot end sooner. One warm-up job
first, then 3 timed jobs; the goal holds only if every run is within 1.5x.
bench_trigger measures the same with 50 real agents.

Where the time goes is in the table: before the first call (the job opening its
runs), the spread of the calls (the fleet's event loop opening them, 32 requests at
a time, the servers whose last run took longest first), and after the last answer
(recording the answers still queued: the answers that arrived since the job's last
wake-up, gathered for 0.1 s, are recorded together, a fixed number of statements
per batch).

    python -m bench.bench_trigger_fleet [--agents 200,1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import ROOT, Clock, bench_database
from bench.report import Outcome, judged, run_standalone

TOKEN = "bench-agent-token"
FASTEST, SLOWEST = 1.0, 3.0
TARGET_RATIO = 1.5


def start_agents(count: int, folder: Path) -> tuple[subprocess.Popen, list[int]]:
    ports_file = folder / "ports.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.simulated_agents", str(count), str(FASTEST), str(SLOWEST), TOKEN]
        + [str(ports_file)],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while not ports_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the simulated agents did not start")
        time.sleep(0.1)
    return proc, json.loads(ports_file.read_text())


def run(agents: int, rounds: int, folder: Path) -> list[dict]:
    from django.conf import settings

    from jobs.models import JobKind
    from jobs.services import start_job
    from publications.models import Dataset
    from servers.models import Server, UpdateRun

    proc, ports = start_agents(agents, folder)
    try:
        dataset = Dataset.objects.create(name="fleet", s3root=f"file://{folder / 'state'}")
        Server.objects.bulk_create(
            Server(
                name=f"sim-{i:03d}", dataset=dataset, agent_url=f"http://127.0.0.1:{port}", agent_token=TOKEN
            )
            for i, port in enumerate(ports)
        )
        settings.DMSUPDATE = settings.DMSUPDATE | {"TRIGGER_CONCURRENCY": agents}
        warm = start_job(JobKind.UPDATE_ALL, dataset=dataset, params={"timeout": 300}, run_now=True)
        assert warm.result["summary"] == f"{agents} ok", warm.result
        figures = []
        for _ in range(rounds):
            with Clock() as c:
                job = start_job(JobKind.UPDATE_ALL, dataset=dataset, params={"timeout": 300}, run_now=True)
            servers = job.result["servers"]
            assert job.result["summary"] == f"{agents} ok", job.result
            runs = list(UpdateRun.objects.filter(job=job).select_related("server"))
            assert len(runs) == agents
            calls = [r.finished_at.timestamp() - servers[r.server.name]["duration_seconds"] for r in runs]
            figures.append(
                {
                    "job": c.seconds,
                    "slowest_in_job": max(s["duration_seconds"] for s in servers.values()),
                    "lead": (min(r.started_at for r in runs) - job.created_at).total_seconds(),
                    "spread": max(calls) - min(calls),
                    "tail": (job.finished_at - max(r.finished_at for r in runs)).total_seconds(),
                }
            )
        return figures
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> Outcome:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="200,1000", help="fleet sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv or [])
    targets, details = (
        [],
        [
            "| agents | round | job | slowest agent in the job | before the first call | last call after the first | after the last answer |",
            "|---|---|---|---|---|---|---|",
        ],
    )
    for agents in (int(n) for n in args.agents.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-trigger-fleet-") as folder:
            with bench_database(f"trigger_fleet_{agents}"):
                figures = run(agents, args.rounds, Path(folder))
        for n, f in enumerate(figures, 1):
            details.append(
                f"| {agents} | {n} | {f['job']:.2f} s | {f['slowest_in_job']:.2f} s | {f['lead']:.2f} s | "
                f"{f['spread']:.2f} s | {f['tail']:.2f} s |"
            )
        targets.append(
            judged(
                f"trigger-and-wait, {agents} simulated agents, vs the slowest agent",
                "x",
                [f["job"] / SLOWEST for f in figures],
                f"<= {TARGET_RATIO}x",
                at_most=TARGET_RATIO,
                rule="worst",
                note=f"job {statistics.median(f['job'] for f in figures):.2f} s against {SLOWEST:g} s; "
                f"one by one: {agents * (FASTEST + SLOWEST) / 2:.0f} s",
            )
        )
    for line in details:
        print(line)
    return Outcome(targets, details, args.rounds)


if __name__ == "__main__":
    raise SystemExit(run_standalone("bench_trigger_fleet", main, sys.argv[1:]))
