"""Publication API throughput with 8 concurrent clients vs raw boto3 `put_object` of the same bytes.

The API runs as production is told to run it (README, "Deployment"): gunicorn
with the repository's `gunicorn.conf.py`, production settings, PostgreSQL.
8 client threads each POST small Turtle files (`op=add`, one graph each) to
`/api/v1/publications/` with a publisher token. Every publication is validated
(layout, size, Turtle parsed), written with an exclusive put, registered,
audited and answered with its key. The raw tool: 8 threads of boto3
`put_object` of the same bytes to the same moto server (its own process), no
checks at all.

Roots: a bucket on the moto server, and a `file://` directory (for which the
figure is also given against 8 threads writing the same files directly).
Before the clock starts, every client has its connection open and the web
workers have served publications to each kind of root (the raw threads get
their boto3 clients made beforehand too).

Beside the rates, the CPU time each process group spent per publication is
printed (web workers, their PostgreSQL backends, moto, the client threads),
read from /proc: on a shared machine it moves much less than wall time.

    python -m bench.bench_publish [--per-client N] [--runs R]
    BENCH_QUICK=1 python -m bench publish
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.harness import ROOT, bench_database, free_port

CLIENTS = 8
TARGET = 0.5
WARM_UP = 4 * CLIENTS  # publications per root before the clock starts


def turtle(n: int) -> bytes:
    """A small Turtle file (~1.5 kB, 20 triples)."""
    lines = ["@prefix ex: <http://example.org/> ."]
    lines += [f'ex:station{n} ex:reading{j} "{n * 100 + j}" .' for j in range(20)]
    return ("\n".join(lines) + "\n").encode()


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} does not answer")


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def timed_threads(pool: ThreadPoolExecutor, jobs: list, work) -> float:
    """Seconds for the pool's CLIENTS threads to do `work(job)` for every job."""
    started = time.perf_counter()
    for _ in pool.map(work, jobs):
        pass
    return time.perf_counter() - started


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone or /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return kids


class CpuMeter:
    """CPU seconds spent so far by the web workers, their PostgreSQL backends, moto and this process."""

    def __init__(self, web: subprocess.Popen, moto: subprocess.Popen, database: str) -> None:
        self.web, self.moto, self.database = web, moto, database

    def _backends(self) -> list[int]:
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.database],
            )
            return [pid for (pid,) in cur.fetchall()]

    def read(self) -> dict[str, float]:
        return {
            "web": sum(_cpu(pid) for pid in [self.web.pid, *_children(self.web.pid)]),
            "postgres": sum(_cpu(pid) for pid in self._backends()),
            "moto": _cpu(self.moto.pid),
            "clients": _cpu(os.getpid()),
        }


def main(argv: list[str] | None = None) -> int:
    quick = os.environ.get("BENCH_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-client", type=int, default=5 if quick else 25)
    parser.add_argument("--runs", type=int, default=1 if quick else 3)
    args = parser.parse_args(argv or [])
    total = CLIENTS * args.per_client
    scratch = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    procs: list[subprocess.Popen] = []
    try:
        with bench_database("publish"):
            try:
                return measure(args, total, scratch, procs)
            finally:
                # Before the database is dropped: the workers keep their connections open.
                for proc in procs:
                    stop(proc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def measure(args: argparse.Namespace, total: int, scratch: Path, procs: list[subprocess.Popen]) -> int:
    import boto3
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from accounts.models import ApiToken
    from publications.models import Dataset, PublicationEvent

    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "DMSUPDATE_DEBUG": "0",
        "DMSUPDATE_SECRET_KEY": "bench-only-secret",
        "DMSUPDATE_ALLOWED_HOSTS": "127.0.0.1",
        "DMSUPDATE_SSL_REDIRECT": "0",
        "DMSUPDATE_THROTTLE_TOKEN": "1000000/min",
        "DMSUPDATE_VAR_DIR": str(scratch / "var"),
        "DMSUPDATE_LOG_LEVEL": "WARNING",
    }
    moto_port, web_port = free_port(), free_port()
    moto = f"http://127.0.0.1:{moto_port}"
    web = f"http://127.0.0.1:{web_port}"
    moto_proc = start(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        env,
        scratch / "moto.log",
    )
    procs.append(moto_proc)
    web_proc = start(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "dmsupdate.wsgi"]
        + ["--bind", f"127.0.0.1:{web_port}"],
        env,
        scratch / "web.log",
    )
    procs.append(web_proc)
    wait_http(moto)
    wait_http(web + "/healthz")
    meter = CpuMeter(web_proc, moto_proc, db["NAME"])
    s3 = boto3.client("s3", endpoint_url=moto)
    user = get_user_model().objects.create_user("feed")
    _, key = ApiToken.issue(user, "publisher", name="bench")
    headers = {"Authorization": f"Token {key}"}
    bodies = [turtle(n) for n in range(total)]
    kinds = ("raw", "s3", "file", "files")
    figures: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}

    for run in range(args.runs):
        bucket = f"publish-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        raw_bucket = f"raw-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=raw_bucket)
        folder = scratch / f"root-{run}"
        folder.mkdir()
        raw_folder = scratch / f"raw-{run}"
        raw_folder.mkdir()
        (scratch / f"warm-{run}").mkdir()
        datasets = {
            "s3": Dataset.objects.create(name=f"s3-{run}", s3root=f"s3://{bucket}/dms", s3endpoint=moto),
            "file": Dataset.objects.create(name=f"file-{run}", s3root=f"file://{folder}"),
            "warm-s3": Dataset.objects.create(
                name=f"warm-s3-{run}", s3root=f"s3://{bucket}/warm", s3endpoint=moto
            ),
            "warm-file": Dataset.objects.create(
                name=f"warm-file-{run}", s3root=f"file://{scratch}/warm-{run}"
            ),
        }
        local = threading.local()

        def warm(_: int, local=local, raw_bucket=raw_bucket) -> None:
            local.s3 = boto3.session.Session().client("s3", endpoint_url=moto)
            local.s3.list_objects_v2(Bucket=raw_bucket, MaxKeys=1)
            local.http = requests.Session()
            local.http.get(web + "/healthz", timeout=30)
            time.sleep(0.2)  # every pool thread gets one

        def raw_put(n: int, local=local, raw_bucket=raw_bucket) -> None:
            local.s3.put_object(Bucket=raw_bucket, Key=f"dms/raw/{n}.ttl", Body=bodies[n])

        def raw_write(n: int, raw_folder=raw_folder) -> None:
            (raw_folder / f"{n}.ttl").write_bytes(bodies[n])

        def publisher(dataset: str, local=local):
            def publish(n: int, local=local) -> None:
                answer = local.http.post(
                    web + "/api/v1/publications/",
                    headers=headers,
                    data={
                        "dataset": dataset,
                        "op": "add",
                        "label": "readings",
                        "graph": f"http://example.org/graph/{n}",
                    },
                    files={"file": (f"{n}.ttl", bodies[n % len(bodies)], "text/turtle")},
                    timeout=60,
                )
                if answer.status_code != 201:
                    raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:300]}")

            return publish

        def phase(kind: str, pool: ThreadPoolExecutor, work) -> None:
            before = meter.read()
            figures[kind].append(timed_threads(pool, list(range(total)), work))
            after = meter.read()
            cpu[kind].append({group: after[group] - before[group] for group in after})

        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(warm, range(CLIENTS)))
            for name in ("warm-s3", "warm-file"):
                list(pool.map(publisher(datasets[name].name), range(WARM_UP)))
            phase("raw", pool, raw_put)
            phase("s3", pool, publisher(datasets["s3"].name))
            phase("file", pool, publisher(datasets["file"].name))
            phase("files", pool, raw_write)
        for name in ("s3", "file"):
            count = PublicationEvent.objects.filter(dataset=datasets[name]).count()
            assert count == total, (name, count)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="dms/updates/").get("KeyCount", 0)
        assert listed == total, listed

    def rate(kind: str) -> float:
        return total / statistics.median(figures[kind])

    def cpu_ms(kind: str, group: str) -> float:
        return statistics.median(run[group] for run in cpu[kind]) / total * 1000

    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    print(
        f"bench_publish: {total} small Turtle publications ({CLIENTS} clients x {args.per_client}),"
        f" gunicorn.conf.py ({config['workers']} {config['worker_class']} workers x {config['threads']} threads),"
        f" {args.runs} run(s),"
        f" medians (target >= {TARGET}x raw boto3); load average {os.getloadavg()[0]:.1f}"
    )
    for kind in kinds:
        print(f"  {kind:5} runs: {', '.join(f'{total / s:.0f}/s' for s in figures[kind])}")
    raw = rate("raw")
    print(f"  raw boto3 put_object to moto, 8 threads: {raw:7.1f} objects/s")
    ok = True
    for kind, label in (("s3", "API, moto S3 root"), ("file", "API, file:// root")):
        ratio = rate(kind) / raw
        ok &= ratio >= TARGET
        verdict = "ok" if ratio >= TARGET else f"UNDER {TARGET}x"
        print(f"  {label:<26} {rate(kind):7.1f} publications/s  ratio {ratio:.2f}x ({verdict})")
    print(
        f"  raw file writes, 8 threads: {rate('files'):.0f} files/s"
        f" (API file:// root is {rate('file') / rate('files'):.3f}x of it)"
    )
    print("  CPU ms per object (medians): web workers, PostgreSQL backends, moto, client threads")
    for kind in ("raw", "s3", "file"):
        groups = ", ".join(
            f"{group} {cpu_ms(kind, group):.1f}" for group in ("web", "postgres", "moto", "clients")
        )
        print(f"    {kind:5} {groups}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
