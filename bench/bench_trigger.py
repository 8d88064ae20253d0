"""Trigger-and-wait over 50 real agents (`dms-update serve`, embedded stores), each with a small update.

Per round: every agent first runs a small update alone (POST /update?wait, one agent at
a time: its own update time), then one more small update is published and a single
update-all job triggers all agents at once and waits for them. Reported: the job's
time against the slowest agent's own update time (alone, and within the job's run),
and against the sum a one-by-one trigger would take.

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
            runs = UpdateRun.objects.filter(job=job)
            last_answer = max(r.finished_at for r in runs)
            figures.append(
                {
                    # Where the job's time went: before the agents were called, and after the last answered.
                    "lead": (min(r.started_at for r in runs) - job.created_at).total_seconds(),
                    "tail": (job.finished_at - last_answer).total_seconds(),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    # `python -m bench` calls main() with no arguments: defaults, not the runner's own argv.
    args = parser.parse_args(argv or [])
    base = Path(tempfile.mkdtemp(prefix="bench-trigger-"))
    try:
        with bench_database("trigger"):
            figures = run(args.agents, args.rounds, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def med(name: str) -> float:
        return statistics.median(f[name] for f in figures)

    job, in_job, alone, total = med("job"), med("slowest_in_job"), med("slowest_alone"), med("sum_alone")
    print(f"bench_trigger: {args.agents} agents (dms-update serve, embedded stores), {args.rounds} rounds")
    for n, f in enumerate(figures, 1):
        print(
            f"  round {n}: job {f['job']:.2f} s; slowest agent in the job {f['slowest_in_job']:.2f} s, "
            f"alone {f['slowest_alone']:.2f} s; one by one {f['sum_alone']:.2f} s; "
            f"before the first call {f['lead']:.2f} s, after the last answer {f['tail']:.2f} s"
        )
    ratio = job / in_job
    print(
        f"  median job {job:.2f} s, slowest agent in the job {in_job:.2f} s: ratio {ratio:.2f}x (target <= {TARGET_RATIO})"
    )
    print(
        f"  against the slowest agent alone ({alone:.2f} s): {job / alone:.2f}x; one by one would take {total:.2f} s"
    )
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
