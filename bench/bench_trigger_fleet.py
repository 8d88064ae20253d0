"""Trigger-and-wait over 200 simulated agents: what the control plane adds to the slowest agent's time.

The agents are simulated (bench/simulated_agents.py, one process, each agent on
its own port answering like `dms-update serve`), taking 1 s to 3 s per update, so
the machine's two cores are left to the control plane: the job's time against the
slowest agent's own time (3 s, exact) is the cost of calling 200 agents at once,
recording 200 answers (status report with lag, update run, audit) and ending the
job. bench_trigger measures the same with real agents (50 by default).

    python -m bench.bench_trigger_fleet [--agents 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import ROOT, Clock, bench_database

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv or [])
    with tempfile.TemporaryDirectory(prefix="bench-trigger-fleet-") as folder:
        with bench_database("trigger_fleet"):
            figures = run(args.agents, args.rounds, Path(folder))
    print(
        f"bench_trigger_fleet: {args.agents} simulated agents ({FASTEST:g}-{SLOWEST:g} s per update), "
        f"{args.rounds} rounds, load average {os.getloadavg()[0]:.1f}"
    )
    for n, f in enumerate(figures, 1):
        print(
            f"  round {n}: job {f['job']:.2f} s; slowest agent in the job {f['slowest_in_job']:.2f} s; "
            f"before the first call {f['lead']:.2f} s, last call {f['spread']:.2f} s after the first, "
            f"after the last answer {f['tail']:.2f} s"
        )
    job = statistics.median(f["job"] for f in figures)
    ratio = job / SLOWEST
    verdict = "ok" if ratio <= TARGET_RATIO else f"over {TARGET_RATIO}x"
    print(
        f"  median job {job:.2f} s against the slowest agent's own {SLOWEST:g} s: ratio {ratio:.2f}x"
        f" (target <= {TARGET_RATIO}x: {verdict}); one by one would take {args.agents * (FASTEST + SLOWEST) / 2:.0f} s"
    )
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
