"""GC of 100,000 expired objects on an S3 server (moto): DeleteObjects calls, and time against raw boto3 deletes.

The product side is `gc.collect(dataset)`: it plans from the registry (the
expired rows past the grace period), deletes the keys in DeleteObjects batches
and marks every row `deleted`. The raw side is boto3's `delete_objects` in
1,000-key batches over the same number of keys in another bucket on the same
server (what `aws s3 rm --recursive` does), so the time ratio also shows what
planning and marking cost. DeleteObjects calls are counted on the server side (a
wrapper around moto's WSGI app). Both sides warm (one small run of each first),
the order of the sides reversed every run. The registry rows are removed between
runs with one bounded `DELETE ... WHERE dataset_id = %s`.

    python -m bench.bench_gc [--objects N] [--runs R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import uuid
from datetime import timedelta

from bench.harness import Clock, CountingMoto, bench_database
from bench.report import Outcome, Target, judged, run_standalone


def run(objects: int, runs: int) -> list[dict]:
    import boto3
    from django.db import connection
    from django.utils import timezone

    from dmsupdate.state.keys import NANOS, EffectiveTime, format_key
    from publications import gc
    from publications.models import Dataset, ObjectState, StateObject

    start = EffectiveTime.parse("2020-01-01", "00-00-00-0").nanos
    old = timezone.now() - timedelta(days=30)
    figures: list[dict] = []
    with CountingMoto() as moto:
        client = boto3.client("s3", endpoint_url=moto.url)

        def bucket_of(keys: list[str]) -> str:
            bucket = f"gc-{uuid.uuid4().hex[:10]}"
            client.create_bucket(Bucket=bucket)
            moto.put_fast(bucket, [f"dms/{k}" for k in keys])
            return bucket

        def product(count: int) -> dict:
            keys = [
                format_key(
                    EffectiveTime(start + i * NANOS // 10), "readings", "drop", f"http://example.org/g/{i}"
                )
                for i in range(count)
            ]
            bucket = bucket_of(keys)
            dataset = Dataset.objects.create(
                name=bucket, s3root=f"s3://{bucket}/dms", s3endpoint=moto.url, gc_grace_hours=1
            )
            StateObject.objects.bulk_create(
                (StateObject.for_key(dataset, k, ObjectState.EXPIRED, old) for k in keys), batch_size=5000
            )
            moto.calls.clear()
            with Clock() as clock:
                result = gc.collect(dataset)
            calls = moto.calls["DeleteObjects"]
            left = client.list_objects_v2(Bucket=bucket, Prefix="dms/").get("KeyCount", 0)
            marked = StateObject.objects.filter(dataset=dataset, state=ObjectState.DELETED).count()
            assert result["deleted_count"] == count and left == 0 and marked == count, (result, left, marked)
            with connection.cursor() as cur:
                cur.execute("DELETE FROM publications_stateobject WHERE dataset_id = %s", [dataset.pk])
            dataset.delete()
            return {"seconds": clock.seconds, "calls": calls}

        def raw(count: int) -> dict:
            keys = [f"raw/{i:08d}" for i in range(count)]
            bucket = bucket_of(keys)
            with Clock() as clock:
                for i in range(0, count, 1000):
                    batch = [{"Key": f"dms/{k}"} for k in keys[i : i + 1000]]
                    client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
            return {"seconds": clock.seconds}

        product(1000)
        raw(1000)
        for n in range(runs):
            first, second = (product, raw) if n % 2 == 0 else (raw, product)
            a, b = first(objects), second(objects)
            ours, theirs = (a, b) if first is product else (b, a)
            figures.append({"gc": ours["seconds"], "raw": theirs["seconds"], "calls": ours["calls"]})
    return figures


def main(argv: list[str] | None = None) -> Outcome:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv or [])
    with bench_database("gc"):
        figures = run(args.objects, args.runs)
    gc_s = statistics.median(r["gc"] for r in figures)
    raw_s = statistics.median(r["raw"] for r in figures)
    limit = -(-args.objects // 1000) + 1  # one DeleteObjects call per 1,000 keys, and one spare
    targets = [
        judged(
            f"GC of {args.objects:,} expired objects: DeleteObjects calls",
            "calls",
            [r["calls"] for r in figures],
            f"<= {limit}",
            at_most=limit,
            rule="worst",
        ),
        Target(
            f"GC of {args.objects:,} expired objects: time vs raw boto3 delete_objects",
            "x",
            [r["gc"] / r["raw"] for r in figures],
            "none set (shown)",
            None,
            note=f"gc {gc_s:.1f} s (plan, delete, mark) against {raw_s:.1f} s (delete only)",
        ),
    ]
    details = ["| run | gc | raw boto3 | DeleteObjects calls |", "|---|---|---|---|"]
    details += [
        f"| {n} | {r['gc']:.2f} s | {r['raw']:.2f} s | {r['calls']} |" for n, r in enumerate(figures, 1)
    ]
    for line in details:
        print(line)
    return Outcome(targets, details, args.runs)


if __name__ == "__main__":
    raise SystemExit(run_standalone("bench_gc", main, sys.argv[1:]))
