"""State roots for the sync_state tests: keys written straight into a file:// or S3 (moto) root."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import boto3

from dmsupdate.state.keys import NANOS, EffectiveTime, format_key
from publications import registry_writer
from publications.models import Dataset

ROOT = Path(__file__).resolve().parents[2]
T0 = EffectiveTime.parse("2016-01-15", "00-00-00-0").nanos
GRAPH = "http://environment.data.gov.uk/flood-monitoring/graph/readings-{}"


def update_key(i: int) -> str:
    """The i-th update: a replace of a daily readings graph, one second apart."""
    return format_key(EffectiveTime(T0 + i * NANOS), "readings", "replace", GRAPH.format(i), "ttl")


def put_objects(root: tuple[str, str | None], keys: list[str], body: bytes = b"<a> <b> <c> .\n") -> None:
    """Write keys straight into the root (as a publisher writing to S3 itself would)."""
    url, endpoint = root
    parsed = urlparse(url)
    if parsed.scheme == "file":
        for key in keys:
            path = Path(parsed.path) / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        return
    client = boto3.client("s3", endpoint_url=endpoint)
    prefix = parsed.path.strip("/")

    def put(key: str) -> None:
        client.put_object(Bucket=parsed.netloc, Key=f"{prefix}/{key}", Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))


def delete_objects(root: tuple[str, str | None], keys: list[str]) -> None:
    url, endpoint = root
    parsed = urlparse(url)
    if parsed.scheme == "file":
        for key in keys:
            (Path(parsed.path) / key).unlink()
        return
    client = boto3.client("s3", endpoint_url=endpoint)
    prefix = parsed.path.strip("/")
    for key in keys:
        client.delete_object(Bucket=parsed.netloc, Key=f"{prefix}/{key}")


def make_dataset(root: tuple[str, str | None], name: str = "flood") -> Dataset:
    return Dataset.objects.create(name=name, s3root=root[0], s3endpoint=root[1] or "")


def fail_batch_write(monkeypatch, nth: int, message: str):
    """Make the `nth` batch write raise RuntimeError(message); returns the real writer."""
    real_write = registry_writer.write_batch
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == nth:
            raise RuntimeError(message)
        return real_write(*args)

    monkeypatch.setattr(registry_writer, "write_batch", failing)
    return real_write
