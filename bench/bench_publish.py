"""Publication API throughput with 8 concurrent clients vs raw boto3 `put_object` of the same bytes.

The API runs under gunicorn (4 sync workers, production settings) on PostgreSQL;
8 client threads each POST small Turtle files (`op=add`, one graph each) to
`/api/v1/publications/` with a publisher token. Every publication is validated
(layout, size, Turtle parsed), written with an exclusive put, registered, audited
and answered with its key. The raw tool: 8 threads of boto3 `put_object` of the
same bytes to the same moto server (its own process), no checks at all.

Roots: a bucket on the moto server, and a `file://` directory (for which the
figure is also given against 8 threads writing the same files directly).

    python -m bench.bench_publish [--per-client N] [--runs R]
    BENCH_QUICK=1 python -m bench publish
"""

from __future__ import annotations

import argparse
import os
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
WORKERS = 4
TARGET = 0.5


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
            from django.core.management import call_command

            call_command("createcachetable", verbosity=0)
            moto_port, web_port = free_port(), free_port()
            moto = f"http://127.0.0.1:{moto_port}"
            web = f"http://127.0.0.1:{web_port}"
            procs.append(
                start(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                    env,
                    scratch / "moto.log",
                )
            )
            procs.append(
                start(
                    [sys.executable, "-m", "gunicorn", "dmsupdate.wsgi:application"]
                    + ["--bind", f"127.0.0.1:{web_port}", "--workers", str(WORKERS)],
                    env,
                    scratch / "web.log",
                )
            )
            wait_http(moto)
            wait_http(web + "/healthz")
            s3 = boto3.client("s3", endpoint_url=moto)
            user = get_user_model().objects.create_user("feed")
            _, key = ApiToken.issue(user, "publisher", name="bench")
            headers = {"Authorization": f"Token {key}"}
            bodies = [turtle(n) for n in range(total)]

            figures: dict[str, list[float]] = {"raw": [], "s3": [], "file": [], "files": []}
            for run in range(args.runs):
                bucket = f"publish-{uuid.uuid4().hex[:8]}"
                s3.create_bucket(Bucket=bucket)
                raw_bucket = f"raw-{uuid.uuid4().hex[:8]}"
                s3.create_bucket(Bucket=raw_bucket)
                folder = scratch / f"root-{run}"
                folder.mkdir()
                raw_folder = scratch / f"raw-{run}"
                raw_folder.mkdir()
                datasets = {
                    "s3": Dataset.objects.create(
                        name=f"s3-{run}", s3root=f"s3://{bucket}/dms", s3endpoint=moto
                    ),
                    "file": Dataset.objects.create(name=f"file-{run}", s3root=f"file://{folder}"),
                }
                # One client per thread, made (and its connection opened) before the clock starts.
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
                            files={"file": (f"{n}.ttl", bodies[n], "text/turtle")},
                            timeout=60,
                        )
                        if answer.status_code != 201:
                            raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:300]}")

                    return publish

                jobs = list(range(total))
                with ThreadPoolExecutor(CLIENTS) as pool:
                    list(pool.map(warm, range(CLIENTS)))
                    figures["raw"].append(timed_threads(pool, jobs, raw_put))
                    figures["s3"].append(timed_threads(pool, jobs, publisher(datasets["s3"].name)))
                    figures["file"].append(timed_threads(pool, jobs, publisher(datasets["file"].name)))
                    figures["files"].append(timed_threads(pool, jobs, raw_write))
                for name, dataset in datasets.items():
                    count = PublicationEvent.objects.filter(dataset=dataset).count()
                    assert count == total, (name, count)
                listed = s3.list_objects_v2(Bucket=bucket, Prefix="dms/updates/").get("KeyCount", 0)
                assert listed == total, listed

            def rate(kind: str) -> float:
                return total / statistics.median(figures[kind])

            print(
                f"bench_publish: {total} small Turtle publications ({CLIENTS} clients x {args.per_client}),"
                f" gunicorn {WORKERS} workers, {args.runs} run(s), medians (target >= {TARGET}x raw boto3)"
            )
            for kind in ("raw", "s3", "file", "files"):
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
            return 0 if ok else 1
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
