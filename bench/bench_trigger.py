"""Trigger-and-wait over 50 real agents (`dms-update serve`, embedded stores), each with a small update.

Per round: every agent first runs a small update alone (POST /update?wait, one agent at
a time: its own update time), then one more small update is published and a single
update-all job triggers all agents at once and waits for them. The product side is
the job's time; the raw side is the slowest agent's own update time within that job
(the job cannot end before it). With 50 agent processes on the same two cores as
the control plane, each agent is slower within the job than alone (both shown), so
this measures the job's overhead on a crowded machine; bench_trigger_fleet measures
it with simulated agents that leave the cores to the control plane. One warm-up job
first; the goal holds only if every round is within 1.5x.

    python -m bench.bench_trigger [--agents 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.harness import ROOT, Clock, bench_database, free_port
from bench.report import Outcome, judged, run_standalone

TOKEN = "bench-agent-token"
TARGET_RATIO = 1.5


def wait_for(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"agent at {url} did not start")


def publish(root: Path, n: int) -> str:
    """A small update (one triple added to one graph) at the current time."""
    from dmsupdate.state.keys import EffectiveTime, format_key

    key = format_key(EffectiveTime.now(), "bench", "add", f"http://example.org/graph/{n}", "nt")
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f'<http://example.org/s{n}> <http://example.org/p> "{n}" .\n'.encode())
    return key


def run(agents: int, rounds: int, base: Path) -> list[dict]:
    import gzip

    from django.conf import settings

    from dmsupdate.state.keys import EffectiveTime, format_key
    from jobs.models import JobKind
    from jobs.services import start_job
    from publications.models import Dataset
    from servers.models import Server, UpdateRun

    root = base / "state"
    dump = root / format_key(EffectiveTime.now(), "bench", "dump")
    dump.parent.mkdir(parents=True)
    dump.write_bytes(gzip.compress(b'<http://example.org/s> <http://example.org/p> "base" .\n'))
    dataset = Dataset.objects.create(name="bench", s3root=f"file://{root}")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs: list[subprocess.Popen] = []
    urls: list[str] = []
    used: set[int] = set()

    def start(folder: Path) -> tuple[subprocess.Popen, str]:
        port = free_port()
        while port in used:  # two agents on one port would make one agent answer for two servers
            port = free_port()
        used.add(port)
        command = [sys.executable, "-m", "dmsupdate.agent", "--config", str(folder / "config.json")]
        proc = subprocess.Popen(
            [*command, "serve", "--bind", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return proc, f"http://127.0.0.1:{port}"

    try:
        for i in range(agents):
            folder = base / f"agent-{i}"
            (folder / "log").mkdir(parents=True)
            config = {
                "s3root": f"file://{root}",
                "dblocation": str(folder),
                "dbname": "db",
                "logArea": str(folder / "log"),
                "agent_token": TOKEN,
            }
            (folder / "config.json").write_text(json.dumps(config))
            proc, url = start(folder)
            procs.append(proc)
            urls.append(url)
        for i, url in enumerate(urls):
            wait_for(url)
            while procs[i].poll() is not None:  # it lost its port to another process: start it again
                procs[i], urls[i] = start(base / f"agent-{i}")
                wait_for(urls[i])
            Server.objects.create(
                name=f"agent-{i:02d}", dataset=dataset, agent_url=urls[i], agent_token=TOKEN
            )
        settings.DMSUPDATE = settings.DMSUPDATE | {"TRIGGER_CONCURRENCY": agents}
        warm = start_job(JobKind.UPDATE_ALL, dataset=dataset, params={"timeout": 300}, run_now=True)
        assert warm.result["summary"] == f"{agents} ok", warm.result
        figures = []
        session = requests.Session()
        for r in range(rounds):
            publish(root, 2 * r)
            solo = []
            for url in urls:
                with Clock() as c:
                    answer = session.post(
                        url + "/update", params={"wait": 120}, headers={"Authorization": f"Bearer {TOKEN}"}
                    )
                assert answer.status_code == 200 and answer.json()["applied"] == 1, answer.text
                solo.append(c.seconds)
            publish(root, 2 * r + 1)
            with Clock() as c:
                job = start_job(JobKind.UPDATE_ALL, dataset=dataset, params={"timeout": 300}, run_now=True)
            servers = job.result["servers"]
            assert job.result["summary"] == f"{agents} ok", job.result
            assert all(s["ops_applied"] == 1 for s in servers.values())
            runs = UpdateRun.objects.filter(job=job).select_related("server")
            last_answer = max(r.finished_at for r in runs)
            calls = [r.finished_at.timestamp() - servers[r.server.name]["duration_seconds"] for r in runs]
            figures.append(
                {
                    # Where the job's time went: before the agents were called, and after the last answered.
                    "lead": (min(r.started_at for r in runs) - job.created_at).total_seconds(),
                    "tail": (job.finished_at - last_answer).total_seconds(),
                    # The last agent was called this long after the first (thread start-up under load).
                    "spread": max(calls) - min(calls),
                    "job": c.seconds,
                    "slowest_alone": max(solo),
                    "sum_alone": sum(solo),
                    "slowest_in_job": max(s["duration_seconds"] for s in servers.values()),
                }
            )
        return figures
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main(argv: list[str] | None = None) -> Outcome:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv or [])
    base = Path(tempfile.mkdtemp(prefix="bench-trigger-"))
    try:
        with bench_database("trigger"):
            figures = run(args.agents, args.rounds, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    details = [
        "| round | job | slowest agent in the job | slowest alone | one by one | before the first call "
        "| last call after the first | after the last answer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    details += [
        f"| {n} | {f['job']:.2f} s | {f['slowest_in_job']:.2f} s | {f['slowest_alone']:.2f} s | "
        f"{f['sum_alone']:.2f} s | {f['lead']:.2f} s | {f['spread']:.2f} s | {f['tail']:.2f} s |"
        for n, f in enumerate(figures, 1)
    ]
    for line in details:
        print(line)
    targets = [
        judged(
            f"trigger-and-wait, {args.agents} real agents, vs the slowest agent within the job",
            "x",
            [f["job"] / f["slowest_in_job"] for f in figures],
            f"<= {TARGET_RATIO}x",
            at_most=TARGET_RATIO,
            rule="worst",
            note=f"job {statistics.median(f['job'] for f in figures):.2f} s; the agents share the two cores "
            "with the control plane, so each agent's update is slower within the job than alone",
        )
    ]
    return Outcome(targets, details, args.rounds)


if __name__ == "__main__":
    raise SystemExit(run_standalone("bench_trigger", main, sys.argv[1:]))
