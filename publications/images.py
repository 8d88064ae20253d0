"""Clean base images: rebuild a dataset's state in a scratch store and publish it as an image and a dump.

The worker runs the agent itself (`Runner.rebuild`, the same planner and replay
as every data server) against the dataset root in a scratch directory: the
newest image or dump, then every later update. The resulting store is written
as `images/{date}/{time}/dmsupdate_image.tgz` and `..._dump.nq.gz`, stamped with
the effective time of the last update it includes, so a server bootstrapped
from it replays only what came after. Both rows keep the store's full
fingerprint (DESIGN §5b): what every server at that effective time must hold.
"""

from __future__ import annotations

import gc
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyoxigraph as ox
from django.db import transaction
from django.utils import timezone

from audit.services import record
from dmsupdate.agent.config import Config, ConfigError
from dmsupdate.agent.fingerprint_scan import scan_store
from dmsupdate.agent.images import LEDGER_GRAPH, pack_image, write_dump
from dmsupdate.agent.runner import Runner
from dmsupdate.state.fingerprint import build_fingerprint
from dmsupdate.state.keys import EffectiveTime, format_key, parse_key
from dmsupdate.state.status import now_iso
from dmsupdate.state.stores import ObjectExists, ObjectInfo, StoreError
from jobs.models import Job
from jobs.services import progress
from publications.models import Dataset, ObjectKind, ObjectState, StateObject

IMAGE_LABEL = "dmsupdate"
_CHUNK = 1 << 20


class ImageBuildError(Exception):
    """The image could not be built or published; nothing half-written is registered."""


@dataclass
class BuiltFile:
    """A file written in the scratch directory, with the checksums its upload is verified against."""

    path: Path
    size: int
    md5: str
    sha256: str

    @classmethod
    def of(cls, path: Path) -> BuiltFile:
        md5, sha = hashlib.md5(), hashlib.sha256()
        size = 0
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                md5.update(chunk)
                sha.update(chunk)
                size += len(chunk)
        return cls(path, size, md5.hexdigest(), sha.hexdigest())


def replay_into_scratch(dataset: Dataset, scratch: Path) -> tuple[dict, Path]:
    """Rebuild the dataset's state with the agent's runner into `scratch`; return (status, store dir)."""
    try:
        config = Config.from_dict(
            {
                "s3root": dataset.s3root,
                **({"s3endpoint": dataset.s3endpoint} if dataset.s3endpoint else {}),
                "dblocation": str(scratch),
                "dbname": "store",
                "logArea": str(scratch / "log"),
            },
            source=f"dataset {dataset.name}",
        )
    except ConfigError as exc:
        raise ImageBuildError(f"the dataset's state root cannot be replayed: {exc}") from exc
    (scratch / "log").mkdir(parents=True, exist_ok=True)
    status = Runner(config).rebuild()
    if status.get("lastSucceeded") is not True:
        where = f" at {status['failedKey']}" if status.get("failedKey") else ""
        raise ImageBuildError(f"replay failed{where}: {status.get('error') or 'unknown error'}")
    if not status.get("effectiveDate"):
        raise ImageBuildError("the replay applied nothing (no image or dump to start from)")
    assert config.db_dir is not None
    return status, config.db_dir


def write_files(
    store_dir: Path, scratch: Path, effective: EffectiveTime
) -> tuple[BuiltFile, BuiltFile, int, dict[str, Any]]:
    """Write the image (tgz) and the dump (nq.gz) of a closed store; return them, the quad count
    and the store's full fingerprint."""
    # The replay's ledger is the builder's bookkeeping, not data: servers installing the
    # image start their own ledger, so the image carries none.
    store = ox.Store(str(store_dir))
    store.remove_graph(LEDGER_GRAPH)
    store.flush()
    graphs = {g: (summed.triples, summed.hash) for g, summed in scan_store(store).items()}
    fingerprint = build_fingerprint(graphs, "full", effective.path, now_iso())
    del store
    gc.collect()
    image_path, dump_path = scratch / "image.tgz", scratch / "dump.nq.gz"
    with image_path.open("wb") as f:
        pack_image(store_dir, f)
    with dump_path.open("wb") as f:
        quads = write_dump(store_dir, f)
    return BuiltFile.of(image_path), BuiltFile.of(dump_path), quads, fingerprint


def upload(
    dataset: Dataset, key: str, built: BuiltFile, fingerprint: dict[str, Any] | None = None
) -> ObjectInfo:
    """Upload one built file under a new key (never overwrites) and register it `published`, with its fingerprint."""
    store = dataset.open_store()
    try:
        with built.path.open("rb") as body:
            info = store.put_new(key, body, built.size, md5=built.md5)
    except ObjectExists as exc:
        raise ImageBuildError(
            f"{key} already exists: an image for this effective time was published"
        ) from exc
    except StoreError as exc:
        raise ImageBuildError(f"upload of {key} failed: {exc}") from exc
    now = timezone.now()
    fields = {
        **StateObject.fields_from_key(parse_key(key)),
        "size": built.size,
        "etag": info.etag or built.md5,
        "sha256": built.sha256,
        "state": ObjectState.PUBLISHED,
        "error": "",
        "last_seen": now,
        "state_changed_at": now,
        "fingerprint": fingerprint,
    }
    with transaction.atomic():
        StateObject.objects.update_or_create(
            dataset=dataset, key=key, defaults=fields, create_defaults=fields | {"first_seen": now}
        )
    return info


def newest_image_ns(dataset: Dataset) -> int | None:
    """The effective time of the dataset's newest published image or dump."""
    return (
        StateObject.objects.filter(dataset=dataset, kind=ObjectKind.IMAGE, state=ObjectState.PUBLISHED)
        .order_by("-effective_ns")
        .values_list("effective_ns", flat=True)
        .first()
    )


def build_image(
    dataset: Dataset, actor: str = "system", job: Job | None = None, force: bool = False
) -> dict[str, Any]:
    """Build and publish a clean image and dump of `dataset`; audited. Returns the job result.

    Without `force`, nothing is built when the newest registered image already has the
    effective time the replay reaches (no update since it).
    """
    scratch = Path(tempfile.mkdtemp(prefix=f"dmsupdate-image-{dataset.name}-"))
    try:
        if job:
            progress(job, 5, "replaying the newest image and every later update")
        status, store_dir = replay_into_scratch(dataset, scratch)
        effective = EffectiveTime.parse_text(status["effectiveDate"])
        current = newest_image_ns(dataset)
        if current is not None and current >= effective.nanos and not force:
            summary = f"{dataset.name}: the newest image ({EffectiveTime(current).path}) already includes every update"
            record(actor, "image.up_to_date", dataset.name, {"effective": effective.path})
            return {"built": False, "effective": effective.path, "summary": summary}
        if job:
            progress(job, 60, f"writing the image and dump at {effective.path}")
        image, dump, quads, fingerprint = write_files(store_dir, scratch, effective)
        keys = {
            "dump": format_key(effective, IMAGE_LABEL, "dump"),
            "image": format_key(effective, IMAGE_LABEL, "image"),
        }
        if job:
            progress(job, 80, "uploading")
        for op, built in (("dump", dump), ("image", image)):
            upload(dataset, keys[op], built, fingerprint)
        result = {
            "built": True,
            "effective": effective.path,
            "image": keys["image"],
            "dump": keys["dump"],
            "image_size": image.size,
            "dump_size": dump.size,
            "quads": quads,
            "fingerprint": fingerprint["total"],
            "from": status.get("image"),
            "updates_applied": max(0, int(status.get("applied") or 0) - 1),
            "summary": f"{dataset.name}: image and dump at {effective.path} ({quads} quads)",
        }
        record(actor, "image.built", dataset.name, {k: v for k, v in result.items() if k != "summary"})
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
