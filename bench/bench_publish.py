"""Publication API throughput, 8 concurrent clients, against the floor of the same job done raw.

The API runs as production is told to run it (README, "Deployment"): gunicorn
with the repository's `gunicorn.conf.py`, production settings, PostgreSQL.
8 client threads each POST small Turtle files (`op=add`, one graph each, ~1.5 kB)
to `/api/v1/publications/` with a publisher token. Every publication is validated
(layout, size, Turtle parsed), registered, written with an exclusive put,
marked published, audited and answered with its key.

The raw side of each root does the least any registry must do for the same job:
- **S3 root** (moto server, its own process, over HTTP): 8 threads of boto3
  `put_object` of the same bytes to the same server, nothing else.
- **`file://` root**: 8 threads, each per object writing the same file the way the
  store does (temporary file, write, fsync, exclusive link, unlink) and committing
  one PostgreSQL `INSERT` of its key and size on its own connection (autocommit:
  one WAL flush per object, as any durable registry needs).

Both sides are warm (connections open, clients made, the web workers have served
publications to each kind of root, the raw sides have written a batch) and the
order of the sides is reversed every run. The ratio is taken per run (the API's
rate over its raw side's rate in the same run). Beside the rates, the CPU time
each process group spent per publication (web workers, their PostgreSQL backends,
moto, the client threads) is read from /proc: it moves much less than wall time.

Where the gap comes from when the goal is missed: on two cores shared by every
process both sides are CPU-bound, so the ratio tends to the ratio of CPU spent per
object (the table). A publication is a Django/DRF request (token lookup, throttle,
multipart parse, the Turtle parsed, two transactions of statements, an audit row)
and costs the web worker many times the raw side's whole work; the raw `file://`
floor spends almost no CPU (its commit waits on the WAL flush, which 8 threads
share), and boto3 + moto spend a few milliseconds per put on both sides of the S3
comparison.

    python -m bench.bench_publish [--per-client N] [--runs R]
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
from bench.report import Outcome, judged, run_standalone

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


def main(argv: list[str] | None = None) -> Outcome:
    quick = os.environ.get("BENCH_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-client", type=int, default=5 if quick else 25)
    parser.add_argument("--runs", type=int, default=3)
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


def write_file(folder: Path, name: str, body: bytes) -> None:
    """The store's durable exclusive write (dmsupdate/state/local.py), done with the bare system calls."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, folder / name)
    finally:
        os.unlink(tmp)


def measure(args: argparse.Namespace, total: int, scratch: Path, procs: list[subprocess.Popen]) -> Outcome:
    import boto3
    import psycopg
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection

    from accounts.models import ApiToken
    from publications.models import Dataset, PublicationEvent

    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": url,
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
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE bench_floor (key text PRIMARY KEY, size bigint NOT NULL)")
    kinds = ("put_object", "api_s3", "floor", "api_file")
    figures: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    local = threading.local()
    floor_connections: list = []

    def warm(_: int) -> None:
        local.s3 = boto3.session.Session().client("s3", endpoint_url=moto)
        local.http = requests.Session()
        local.http.get(web + "/healthz", timeout=30)
        local.db = psycopg.connect(url, autocommit=True)
        floor_connections.append(local.db)
        time.sleep(0.2)  # every pool thread gets one

    def publisher(dataset: str):
        def publish(n: int) -> None:
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

    def put_object(bucket: str):
        return lambda n: local.s3.put_object(Bucket=bucket, Key=f"dms/raw/{n}.ttl", Body=bodies[n])

    def floor(folder: Path):
        def write_and_insert(n: int) -> None:
            write_file(folder, f"{n}.ttl", bodies[n])
            local.db.execute(
                "INSERT INTO bench_floor (key, size) VALUES (%s, %s)", (f"{folder.name}/{n}", len(bodies[n]))
            )

        return write_and_insert

    def phase(kind: str, pool: ThreadPoolExecutor, work) -> None:
        before = meter.read()
        figures[kind].append(timed_threads(pool, list(range(total)), work))
        after = meter.read()
        cpu[kind].append({group: after[group] - before[group] for group in after})

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(warm, range(CLIENTS)))
        bucket = f"publish-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        warm_file = scratch / "warm-file"
        warm_file.mkdir()
        warm_sets = [
            Dataset.objects.create(name="warm-s3", s3root=f"s3://{bucket}/warm", s3endpoint=moto),
            Dataset.objects.create(name="warm-file", s3root=f"file://{warm_file}"),
        ]
        for dataset in warm_sets:
            list(pool.map(publisher(dataset.name), range(WARM_UP)))
        (scratch / "warm-floor").mkdir()
        list(pool.map(floor(scratch / "warm-floor"), range(WARM_UP)))
        list(pool.map(put_object(bucket), range(WARM_UP)))
        for run in range(args.runs):
            raw_bucket = f"raw-{uuid.uuid4().hex[:8]}"
            s3.create_bucket(Bucket=raw_bucket)
            folder, raw_folder = scratch / f"root-{run}", scratch / f"floor-{run}"
            folder.mkdir()
            raw_folder.mkdir()
            api_s3 = Dataset.objects.create(
                name=f"s3-{run}", s3root=f"s3://{bucket}/dms{run}", s3endpoint=moto
            )
            api_file = Dataset.objects.create(name=f"file-{run}", s3root=f"file://{folder}")
            order = [
                ("put_object", put_object(raw_bucket)),
                ("api_s3", publisher(api_s3.name)),
                ("floor", floor(raw_folder)),
                ("api_file", publisher(api_file.name)),
            ]
            for kind, work in order if run % 2 == 0 else reversed(order):
                phase(kind, pool, work)
            for dataset in (api_s3, api_file):
                count = PublicationEvent.objects.filter(dataset=dataset).count()
                assert count == total, (dataset.name, count)
            listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"dms{run}/updates/").get("KeyCount", 0)
            assert listed == total, listed
            assert len(list(raw_folder.iterdir())) == total
    for conn in floor_connections:
        conn.close()

    def rates(kind: str) -> list[float]:
        return [total / s for s in figures[kind]]

    def cpu_ms(kind: str, group: str) -> float:
        return statistics.median(run[group] for run in cpu[kind]) / total * 1000

    def rate_note(api: str, raw: str) -> str:
        return (
            f"API {statistics.median(rates(api)):.0f}/s against {statistics.median(rates(raw)):.0f}/s"
            f" (CPU per object: web {cpu_ms(api, 'web'):.1f} ms, PostgreSQL {cpu_ms(api, 'postgres'):.1f} ms"
            f" against the raw side's {cpu_ms(raw, 'clients') + cpu_ms(raw, 'postgres') + cpu_ms(raw, 'moto'):.1f} ms)"
        )

    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    s3_ratios = [a / r for a, r in zip(rates("api_s3"), rates("put_object"), strict=True)]
    file_ratios = [a / r for a, r in zip(rates("api_file"), rates("floor"), strict=True)]
    targets = [
        judged(
            "publication API, S3 root (moto) vs boto3 put_object",
            "x",
            s3_ratios,
            f">= {TARGET}x",
            at_least=TARGET,
            note=rate_note("api_s3", "put_object"),
        ),
        judged(
            "publication API, file:// root vs file write + INSERT committed",
            "x",
            file_ratios,
            f">= {TARGET}x",
            at_least=TARGET,
            note=rate_note("api_file", "floor"),
        ),
    ]
    labels = {
        "put_object": "boto3 put_object (moto)",
        "api_s3": "API, S3 root (moto)",
        "floor": "file write + INSERT committed",
        "api_file": "API, file:// root",
    }
    details = [
        f"{total} publications per side and run ({CLIENTS} clients x {args.per_client}); gunicorn.conf.py: "
        f"{config['workers']} {config['worker_class']} workers x {config['threads']} threads.",
        "",
        "| side | rate per run | CPU ms per object: web workers | PostgreSQL backends | moto | client threads |",
        "|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        details.append(
            f"| {labels[kind]} | {', '.join(f'{r:.0f}/s' for r in rates(kind))} | "
            + " | ".join(f"{cpu_ms(kind, g):.1f}" for g in ("web", "postgres", "moto", "clients"))
            + " |"
        )
    for line in details:
        print(line)
    return Outcome(targets, details, args.runs)


if __name__ == "__main__":
    raise SystemExit(run_standalone("bench_publish", main, sys.argv[1:]))
