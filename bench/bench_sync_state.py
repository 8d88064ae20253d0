"""Registry `sync_state` of a large bucket vs a bare paginated listing of the same bucket, and its memory.

Two roots, listed through the same interfaces the product uses:
- a `file://` root of 1,000,000 keys (and 250,000, to show that peak memory
  does not grow with the bucket): the bare listing is `store.list("")`;
- a moto S3 server of 10,000 keys, listed over HTTP (moto sorts the whole
  bucket for every ListObjectsV2 page, so a million keys would take hours): the
  bare listing is boto3's `list_objects_v2` paginator, 1,000 keys a page.
  The server runs in its own process; its bucket is filled through moto's
  backend before it starts serving (population speed only).

Each sync runs in a fresh subprocess (its peak RSS is that of the sync alone):
`initial` registers every key into an empty registry; `full` is the daily
full reconcile of the same keys, all known; `incremental` lists 1,000 new keys
past the cursor (what the five-minute schedule does).

    python -m bench.bench_sync_state [--keys N] [--s3-keys N] [--file-runs R] [--runs R] [--only file|s3]
    BENCH_QUICK=1 python -m bench sync_state      # 50,000 / 12,500 / 2,000 keys, one run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import ROOT, Clock, bench_database, free_port

TARGET_RATIO = 1.5
KEYS_PER_FOLDER = 10
DATA = Path(os.environ.get("BENCH_DATA_DIR", ROOT / "var" / "bench"))
OPS = [("add", "ttl"), ("add", "nt"), ("replace", "ttl"), ("update", "ru.gz"), ("drop", None)]


def state_keys(n: int, offset: int = 0) -> list[str]:
    """`n` keys in the layout, ten per time folder, one in 10,000 invalid, sorted as S3 lists them."""
    from dmsupdate.state.keys import NANOS, EffectiveTime, format_key

    start = EffectiveTime.parse("2016-01-15", "00-00-00-0").nanos
    keys = []
    for i in range(offset, offset + n):
        if i % 10_000 == 9_999:
            keys.append(f"updates/{i:08d}-notes.txt")
            continue
        op, fmt = OPS[i % len(OPS)]
        at = EffectiveTime(start + (i // KEYS_PER_FOLDER) * (NANOS * 37 // 10))
        graph = f"http://environment.data.gov.uk/flood-monitoring/graph/g{i % 997}"
        arg = None if op == "update" else graph
        keys.append(format_key(at, f"src{i % KEYS_PER_FOLDER}", op, arg, fmt))
    return sorted(keys)


def file_root(n: int) -> Path:
    """A directory holding `n` keys, built once and kept under var/bench (building is not measured)."""
    base = DATA / f"sync-{n}"
    done = base / ".complete"
    if done.exists():
        return base / "state"
    print(f"  building a file:// root of {n} keys under {base} (once)", flush=True)
    state = base / "state"
    made: set[str] = set()
    body = b"<http://example.org/s> <http://example.org/p> 1 .\n"
    for key in state_keys(n):
        folder = key.rpartition("/")[0]
        if folder not in made:
            (state / folder).mkdir(parents=True, exist_ok=True)
            made.add(folder)
        (state / key).write_bytes(body)
    done.touch()
    return state


def database_url() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def in_child(*args: str) -> dict:
    """Run `python -m bench.bench_sync_state --child ...` on the bench database; its JSON answer."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url(),
        # Production settings: with debug on, Django would also keep the SQL of every query.
        "DMSUPDATE_DEBUG": "0",
        "DMSUPDATE_SECRET_KEY": "bench-only-secret",
    }
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_sync_state", "--child", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(argv: list[str]) -> None:
    """In a fresh process: one sync (or one bare listing); print seconds, peak RSS and counts as JSON."""
    import django

    django.setup()
    import logging

    logging.getLogger("publications.sync").setLevel(logging.WARNING)
    from publications.models import Dataset
    from publications.sync import sync_dataset

    what, dataset_id = argv[0], int(argv[1])
    dataset = Dataset.objects.get(pk=dataset_id)
    with Clock() as clock:
        if what == "list":
            listed, calls = bare_listing(dataset)
            figures = {"listed": listed, "list_calls": calls}
        else:
            result = sync_dataset(dataset, full=what == "full")
            figures = {
                "listed": result.listed,
                "new": result.new,
                "invalid": result.invalid,
                "missing": result.missing,
                "list_calls": result.list_calls,
            }
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": clock.seconds, "peak_mb": peak_kb / 1024, **figures}))


def bare_listing(dataset) -> tuple[int, int]:
    """The raw tool: boto3's paginator for S3, the store's own walk for a directory."""
    if dataset.s3root.startswith("s3://"):
        import boto3

        bucket, _, prefix = dataset.s3root[5:].partition("/")
        client = boto3.client("s3", endpoint_url=dataset.s3endpoint)
        listed = calls = 0
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/", PaginationConfig={"PageSize": 1000}
        ):
            calls += 1
            listed += len(page.get("Contents", []))
        return listed, calls
    store = dataset.open_store()
    return sum(1 for _ in store.list("")), store.stats.list_calls


def serve_moto(argv: list[str]) -> None:
    """In its own process: a moto S3 server whose bucket holds `n` keys (+ more on request over stdin)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    port, bucket, n = int(argv[0]), argv[1], int(argv[2])
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    backend.create_bucket(bucket, "us-east-1")
    body = b"<http://example.org/s> <http://example.org/p> 1 .\n"
    for key in state_keys(n):
        backend.put_object(bucket, f"dms/{key}", body)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    for line in sys.stdin:  # "add OFFSET COUNT": late keys for the incremental run
        _, offset, count = line.split()
        for key in state_keys(int(count), int(offset)):
            backend.put_object(bucket, f"dms/{key}", body)
        print("added", flush=True)
    server.stop()


def add_file_keys(state: Path, offset: int, count: int) -> list[Path]:
    written = []
    for key in state_keys(count, offset):
        path = state / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"<http://example.org/s> <http://example.org/p> 2 .\n")
        written.append(path)
    return written


def clear_registry() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE publications_stateobject, publications_dataset CASCADE")


def measure(label: str, s3root: str, endpoint: str, n: int, runs: int, add_late) -> dict:
    """Bare listing, initial, full and incremental syncs of one root, `runs` times each."""
    from publications.models import Dataset

    figures: dict[str, list[dict]] = {"list": [], "initial": [], "full": [], "incremental": []}
    for _ in range(runs):
        clear_registry()
        dataset = Dataset.objects.create(name="bench", s3root=s3root, s3endpoint=endpoint)
        figures["list"].append(in_child("list", str(dataset.pk)))
        figures["initial"].append(in_child("initial", str(dataset.pk)))
        figures["full"].append(in_child("full", str(dataset.pk)))
        undo = add_late(n)
        try:
            figures["incremental"].append(in_child("incremental", str(dataset.pk)))
        finally:
            undo()
    for kind in ("initial", "full"):
        for fig in figures[kind]:
            assert fig["listed"] == n, (label, kind, fig)
    assert all(f["listed"] == 1000 for f in figures["incremental"]), figures["incremental"]
    return figures


def report(label: str, n: int, figures: dict) -> list[tuple[str, float]]:
    def med(kind: str, field: str = "seconds") -> float:
        return statistics.median(f[field] for f in figures[kind])

    base = med("list")
    print(f"  {label}, {n} keys, {len(figures['list'])} run(s), medians:")
    print(f"    bare listing        {base:8.2f} s  ({med('list', 'list_calls'):.0f} list calls)")
    ratios = []
    for kind in ("initial", "full"):
        ratio = med(kind) / base
        ratios.append((f"{label} {kind}", ratio))
        verdict = "ok" if ratio <= TARGET_RATIO else f"OVER {TARGET_RATIO}x"
        print(
            f"    sync {kind:<14} {med(kind):8.2f} s  ratio {ratio:5.2f}x ({verdict}),"
            f" peak RSS {med(kind, 'peak_mb'):.0f} MB, {med(kind, 'list_calls'):.0f} list calls"
        )
    inc = figures["incremental"]
    print(
        f"    sync incremental    {med('incremental'):8.2f} s  for 1,000 new keys past the cursor,"
        f" {max(f['list_calls'] for f in inc)} list call(s)"
    )
    return ratios


def run_file(n: int, runs: int) -> tuple[dict, list]:
    state = file_root(n)

    def add_late(n: int):
        written = add_file_keys(state, n, 1000)

        def undo() -> None:
            for path in written:
                path.unlink()

        return undo

    figures = measure(f"file:// {n}", f"file://{state}", "", n, runs, add_late)
    return figures, report("file://", n, figures)


def run_s3(n: int, runs: int) -> tuple[dict, list]:
    port = free_port()
    bucket = "bench-sync"
    print(f"  starting a moto server holding {n} keys", flush=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_sync_state", "--serve-moto", str(port), bucket, str(n)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}"
        added = [n]

        def add_late(n: int):
            proc.stdin.write(f"add {added[0]} 1000\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "added"
            added[0] += 1000
            # The late keys stay: the next run lists them too, so every run lists n + what was added.
            return lambda: None

        figures: dict[str, list[dict]] = {"list": [], "initial": [], "full": [], "incremental": []}
        from publications.models import Dataset

        for _ in range(runs):
            clear_registry()
            size = added[0]
            dataset = Dataset.objects.create(name="bench", s3root=f"s3://{bucket}/dms", s3endpoint=url)
            figures["list"].append(in_child("list", str(dataset.pk)))
            figures["initial"].append(in_child("initial", str(dataset.pk)))
            figures["full"].append(in_child("full", str(dataset.pk)))
            add_late(size)
            figures["incremental"].append(in_child("incremental", str(dataset.pk)))
            assert figures["initial"][-1]["listed"] == size, figures["initial"][-1]
            assert figures["incremental"][-1]["listed"] == 1000, figures["incremental"][-1]
    finally:
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return figures, report("moto S3 over HTTP", n, figures)


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return 0
    if argv[:1] == ["--serve-moto"]:
        serve_moto(argv[1:])
        return 0
    quick = os.environ.get("BENCH_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=50_000 if quick else 1_000_000)
    parser.add_argument("--small-keys", type=int, default=12_500 if quick else 250_000)
    parser.add_argument("--s3-keys", type=int, default=2_000 if quick else 10_000)
    # A run of the three syncs of 1,000,000 keys takes about six minutes on 2 cores.
    parser.add_argument("--file-runs", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1 if quick else 3, help="runs on the moto server")
    parser.add_argument("--only", choices=["file", "s3"], default=None)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    ratios = []
    with bench_database("sync"):
        print(f"bench_sync_state: sync_state vs a bare listing of the same root (target <= {TARGET_RATIO}x)")
        if args.only in (None, "file"):
            big, r = run_file(args.keys, args.file_runs)
            ratios += r
            small, _ = run_file(args.small_keys, 1)
            small_mb = small["initial"][0]["peak_mb"]
            big_mb = statistics.median(f["peak_mb"] for f in big["initial"])
            print(
                f"  peak RSS of the initial sync: {small_mb:.0f} MB at {args.small_keys} keys,"
                f" {big_mb:.0f} MB at {args.keys} keys ({big_mb / small_mb:.2f}x for"
                f" {args.keys / args.small_keys:.0f}x the keys)"
            )
        if args.only in (None, "s3"):
            _, r = run_s3(args.s3_keys, args.runs)
            ratios += r
    over = [name for name, ratio in ratios if ratio > TARGET_RATIO]
    print(f"  {'every ratio within target' if not over else 'over target: ' + ', '.join(over)}")
    print(f"  ({time.perf_counter() - started:.0f} s in all)")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
