"""GC of 100,000 expired objects on an S3 server (moto): DeleteObjects calls, and time against raw boto3.

The raw tool is boto3's own `delete_objects` in 1,000-key batches over the same
keys (what `aws s3 rm --recursive` does), on the same server in the same run.

    python -m bench.bench_gc [--objects N] [--runs R]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import timedelta

from bench.harness import Clock, CountingMoto, bench_database

TARGET_CALLS = 101


def run(objects: int, runs: int) -> dict:
    import boto3
    from django.utils import timezone

    from dmsupdate.state.keys import NANOS, EffectiveTime, format_key
    from publications import gc
    from publications.models import Dataset, ObjectState, StateObject

    start = EffectiveTime.parse("2020-01-01", "00-00-00-0").nanos
    keys = [
        format_key(EffectiveTime(start + i * NANOS // 10), "readings", "drop", f"http://example.org/g/{i}")
        for i in range(objects)
    ]
    old = timezone.now() - timedelta(days=30)
    figures: list[dict] = []
    with CountingMoto() as moto:
        client = boto3.client("s3", endpoint_url=moto.url)
        for _ in range(runs):
            bucket = f"gc-{uuid.uuid4().hex[:10]}"
            client.create_bucket(Bucket=bucket)
            moto.put_fast(bucket, [f"dms/{k}" for k in keys])
            dataset = Dataset.objects.create(
                name=bucket, s3root=f"s3://{bucket}/dms", s3endpoint=moto.url, gc_grace_hours=1
            )
            StateObject.objects.bulk_create(
                (StateObject.for_key(dataset, k, ObjectState.EXPIRED, old) for k in keys),
                batch_size=5000,
            )
            moto.calls.clear()
            with Clock() as ours:
                result = gc.collect(dataset)
            calls = moto.calls["DeleteObjects"]
            left = client.list_objects_v2(Bucket=bucket, Prefix="dms/").get("KeyCount", 0)
            marked = StateObject.objects.filter(dataset=dataset, state=ObjectState.DELETED).count()
            assert result["deleted_count"] == objects and left == 0 and marked == objects, (
                result,
                left,
                marked,
            )

            moto.put_fast(bucket, [f"dms/{k}" for k in keys])
            with Clock() as raw:
                for i in range(0, objects, 1000):
                    batch = [{"Key": f"dms/{k}"} for k in keys[i : i + 1000]]
                    client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            figures.append({"gc": ours.seconds, "raw": raw.seconds, "calls": calls})
            StateObject.objects.filter(dataset=dataset).delete()
            dataset.delete()
    return {"objects": objects, "runs": figures}


def main(argv: list[str] | None = None) -> int:
    import statistics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    # `python -m bench` calls main() with no arguments: defaults, not the runner's own argv.
    args = parser.parse_args(argv or [])
    with bench_database("gc"):
        out = run(args.objects, args.runs)
    gc_s = statistics.median(r["gc"] for r in out["runs"])
    raw_s = statistics.median(r["raw"] for r in out["runs"])
    calls = max(r["calls"] for r in out["runs"])
    print(f"bench_gc: {args.objects} expired objects, {args.runs} runs")
    for n, r in enumerate(out["runs"], 1):
        print(f"  run {n}: gc {r['gc']:.2f} s, raw boto3 {r['raw']:.2f} s, DeleteObjects calls {r['calls']}")
    print(f"  median gc {gc_s:.2f} s, raw {raw_s:.2f} s, ratio {gc_s / raw_s:.2f}x")
    print(
        f"  DeleteObjects calls {calls} (target <= {TARGET_CALLS}): {'ok' if calls <= TARGET_CALLS else 'OVER'}"
    )
    return 0 if calls <= TARGET_CALLS else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
