"""Publishing: put a validated object under a dataset's root, or record one a publisher put there.

Order of writes, for crash safety (DESIGN §6): the effective time is allocated
and the StateObject recorded `unpublished` in one transaction; then the object
is written with an exclusive put; then, verified, it is marked `published`
together with its PublicationEvent and audit row. A failure between the steps
leaves at most an `unpublished` row (and perhaps its object), which GC collects
after the grace period; it never leaves a `published` row without its object.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from audit.services import record
from dmsupdate.api import ApiError
from dmsupdate.state.keys import EffectiveTime, InvalidKey, format_key, parse_key
from dmsupdate.state.stores import ObjectExists, ObjectInfo, ObjectNotFound, StoreError, StoreUnavailable
from jobs.models import Job, JobKind, JobStatus
from publications.models import Dataset, ObjectKind, ObjectState, PublicationEvent, StateObject
from publications.validation import Upload

log = logging.getLogger(__name__)

_IDEMPOTENCY_LOCK = 0x646D7369  # advisory lock class: one request per (user, Idempotency-Key) at a time
_TRIGGER_LOCK = 0x646D7374  # advisory lock class: one debounce decision per dataset at a time


@dataclass(frozen=True)
class Publisher:
    """Who publishes: the user (for idempotency keys) and how the audit log names them."""

    user: Any
    actor: str


def fingerprint(params: dict, body_sha256: str) -> str:
    """The request fingerprint compared under one Idempotency-Key: params and body digest."""
    canonical = json.dumps({"params": params, "body": body_sha256}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@contextmanager
def _advisory_lock(kind: int, name: str) -> Iterator[None]:
    """Hold a PostgreSQL session advisory lock across several transactions (no-op elsewhere)."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", [kind, name])
    try:
        yield
    finally:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", [kind, name])


@contextmanager
def idempotent(publisher: Publisher, key: str | None, print_: str) -> Iterator[dict | None]:
    """Serialise requests with the same Idempotency-Key; yield the first response, if any.

    Yields the stored response body of an earlier publication with this key
    and the same fingerprint; raises 409 when the fingerprint differs; yields
    None when the key is new (or absent), so the caller publishes.
    """
    if not key:
        yield None
        return
    if len(key) > 200:
        raise ApiError("invalid_idempotency_key", "Idempotency-Key is limited to 200 characters")
    with _advisory_lock(_IDEMPOTENCY_LOCK, f"{publisher.user.pk}:{key}"):
        earlier = PublicationEvent.objects.filter(user=publisher.user, idempotency_key=key).first()
        if earlier is None:
            yield None
        elif earlier.request_fingerprint != print_:
            raise ApiError(
                "idempotency_conflict",
                f"Idempotency-Key {key!r} was used for a different request (publication {earlier.pk})",
                409,
            )
        else:
            yield earlier.response


def allocate_time(dataset: Dataset) -> EffectiveTime:
    """The next effective time of a dataset: now, but strictly after every one given before.

    Runs inside the caller's transaction. One UPDATE reads and advances the
    dataset's last time; its row lock is held until the caller commits, so
    concurrent publications are serialised here and get distinct times (a
    waiting UPDATE re-reads the row the first one committed).
    """
    nanos = time.time_ns()
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {Dataset._meta.db_table} SET last_effective_ns = CASE"
            " WHEN last_effective_ns >= %s THEN last_effective_ns + 1 ELSE %s END"
            " WHERE id = %s RETURNING last_effective_ns",
            [nanos, nanos, dataset.pk],
        )
        (allocated,) = cur.fetchone()
    return EffectiveTime(allocated)


_response_serializer = None


def response_of(event: PublicationEvent) -> dict:
    """The JSON a publication answers with (and replays for a repeated Idempotency-Key).

    One serializer instance serves every publication of the process: building a
    ModelSerializer's fields costs more than the rest of the answer.
    """
    global _response_serializer
    if _response_serializer is None:
        from publications.api.serializers import PublicationSerializer

        _response_serializer = PublicationSerializer()
    return json.loads(json.dumps(_response_serializer.to_representation(event), default=str))


def publish_upload(
    dataset: Dataset,
    *,
    label: str,
    op: str,
    arg: str | None,
    fmt: str,
    upload: Upload | None,
    publisher: Publisher,
    idempotency_key: str | None = None,
    print_: str = "",
) -> PublicationEvent:
    """Write a validated upload under a new key of the dataset and record it published.

    Raises ApiError 503 when the store is unavailable (nothing is published)
    and 502 when the store kept something other than what was sent.
    """
    now = timezone.now()
    with transaction.atomic():
        effective = allocate_time(dataset)
        key = format_key(effective, label, op, arg, fmt or None)
        obj = StateObject.objects.create(
            dataset=dataset,
            key=key,
            **StateObject.fields_from_key(parse_key(key)),
            size=upload.size if upload else 0,
            sha256=upload.sha256 if upload else hashlib.sha256(b"").hexdigest(),
            state=ObjectState.UNPUBLISHED,
            first_seen=now,
            last_seen=now,
            state_changed_at=now,
        )
    store = dataset.open_store()
    md5 = upload.md5 if upload else hashlib.md5(b"").hexdigest()
    size = upload.size if upload else 0
    body = upload.file if upload else _empty()
    body.seek(0)
    try:
        info = store.put_new(key, body, size, md5)
    except ObjectExists as exc:
        raise ApiError("key_taken", f"{key} already exists under {dataset.s3root}", 409) from exc
    except StoreUnavailable as exc:
        record(publisher.actor, "publication.failed", dataset.name, {"key": key, "error": str(exc)})
        raise ApiError(
            "store_unavailable", f"the state root is unavailable, retry later: {exc}", 503
        ) from exc
    except StoreError as exc:
        record(publisher.actor, "publication.failed", dataset.name, {"key": key, "error": str(exc)})
        raise ApiError("store_error", f"the state root refused the object: {exc}", 502) from exc
    if info.size != size or (info.md5 is not None and info.md5 != md5):
        record(publisher.actor, "publication.failed", dataset.name, {"key": key, "error": "checksum"})
        raise ApiError(
            "store_integrity",
            f"the store kept {info.size} bytes (ETag {info.etag}) for {size} bytes (MD5 {md5}); not published",
            502,
        )
    try:
        event = _mark_published(
            obj, info, effective, label, op, store.url(key), publisher, idempotency_key, print_
        )
    except (OperationalError, InterfaceError) as exc:
        # The database went away after the upload: withdraw the object so agents never
        # replay an update the publisher was told failed (and will send again).
        try:
            store.delete_many([key])
        except StoreError:
            log.error("publication of %s failed and the object could not be withdrawn", key)
        raise ApiError(
            "database_unavailable",
            f"the registry database became unavailable; {key} was withdrawn, retry later",
            503,
            {"Retry-After": "5"},
        ) from exc
    except IntegrityError as exc:
        # Only the (user, Idempotency-Key) constraint can fail here: a concurrent request
        # with the same key won (possible without PostgreSQL's advisory lock). This
        # object stays `unpublished`, for GC.
        raise ApiError("idempotency_conflict", f"Idempotency-Key {idempotency_key!r} is in use", 409) from exc
    trigger_servers(dataset, publisher)
    return event


def _mark_published(
    obj: StateObject,
    info: ObjectInfo,
    effective: EffectiveTime,
    label: str,
    op: str,
    url: str,
    publisher: Publisher,
    idempotency_key: str | None,
    print_: str,
) -> PublicationEvent:
    """Mark the verified object published with its event and audit row, in one transaction."""
    dataset = obj.dataset
    with transaction.atomic():
        obj.state, obj.etag, obj.state_changed_at = ObjectState.PUBLISHED, info.etag or "", timezone.now()
        StateObject.objects.filter(pk=obj.pk).update(
            state=obj.state, etag=obj.etag, state_changed_at=obj.state_changed_at
        )
        event = PublicationEvent.objects.create(
            dataset=dataset,
            object=obj,
            key=obj.key,
            source=label,
            op=op,
            effective_ns=effective.nanos,
            user=publisher.user if getattr(publisher.user, "is_authenticated", False) else None,
            actor=publisher.actor,
            s3_url=url,
            size=obj.size,
            sha256=obj.sha256,
            uploaded=True,
            idempotency_key=idempotency_key or None,
            request_fingerprint=print_,
        )
        _finish(event, publisher)
    return event


def record_external(
    dataset: Dataset,
    *,
    s3_url: str,
    publisher: Publisher,
    size: int | None = None,
    md5: str | None = None,
    sha256: str = "",
    idempotency_key: str | None = None,
    print_: str = "",
    check_label=None,
) -> PublicationEvent:
    """Record an object a publisher already put under the dataset's root (checked with HEAD)."""
    key = key_under_root(dataset, s3_url)
    try:
        parsed = parse_key(key)
    except InvalidKey as exc:
        raise ApiError("invalid_key", str(exc)) from exc
    if parsed.kind != ObjectKind.UPDATE and parsed.kind != ObjectKind.IMAGE:
        raise ApiError("invalid_key", f"{key} is neither an update nor an image; nothing to publish")
    if check_label is not None:
        check_label(parsed.label or "")
    store = dataset.open_store()
    try:
        info = store.head(key)
    except ObjectNotFound as exc:
        raise ApiError("object_not_found", f"no object at {s3_url}") from exc
    except StoreUnavailable as exc:
        raise ApiError(
            "store_unavailable", f"the state root is unavailable, retry later: {exc}", 503
        ) from exc
    except StoreError as exc:
        raise ApiError("store_error", str(exc), 502) from exc
    if size is not None and info.size != size:
        raise ApiError("size_mismatch", f"{key} holds {info.size} bytes, not {size}")
    if md5 and info.md5 and info.md5 != md5.lower():
        raise ApiError("checksum_mismatch", f"{key} has MD5 {info.md5}, not {md5}")
    now = timezone.now()
    with transaction.atomic():
        Dataset.objects.select_for_update().get(pk=dataset.pk)
        if PublicationEvent.objects.filter(dataset=dataset, key=key).exists():
            raise ApiError("already_recorded", f"{key} was already published", 409)
        obj, _ = StateObject.objects.update_or_create(
            dataset=dataset,
            key=key,
            defaults={
                **StateObject.fields_from_key(parsed),
                "size": info.size,
                "etag": info.etag or "",
                "sha256": sha256,
                "state": ObjectState.PUBLISHED,
                "error": "",
                "last_seen": now,
                "state_changed_at": now,
            },
            create_defaults={
                **StateObject.fields_from_key(parsed),
                "size": info.size,
                "etag": info.etag or "",
                "sha256": sha256,
                "state": ObjectState.PUBLISHED,
                "first_seen": now,
                "last_seen": now,
                "state_changed_at": now,
            },
        )
        event = PublicationEvent.objects.create(
            dataset=dataset,
            object=obj,
            key=key,
            source=parsed.label or "",
            op=parsed.op or "",
            effective_ns=parsed.effective.nanos if parsed.effective else 0,
            user=publisher.user if getattr(publisher.user, "is_authenticated", False) else None,
            actor=publisher.actor,
            s3_url=store.url(key),
            size=info.size,
            sha256=sha256,
            uploaded=False,
            idempotency_key=idempotency_key or None,
            request_fingerprint=print_,
        )
        _finish(event, publisher)
    if parsed.kind == ObjectKind.UPDATE:
        trigger_servers(dataset, publisher)
    return event


def key_under_root(dataset: Dataset, url: str) -> str:
    """The key of `url` relative to the dataset's root; 400 when it lies outside the root."""
    root = dataset.s3root.rstrip("/") + "/"
    if not isinstance(url, str) or not url.startswith(root):
        raise ApiError("outside_root", f"{url!r} is not under the dataset's root {root}")
    key = url[len(root) :]
    if not key or ".." in key.split("/") or "//" in key or urlparse(url).query:
        raise ApiError("invalid_key", f"{url!r} does not name an object under {root}")
    return key


def _finish(event: PublicationEvent, publisher: Publisher) -> None:
    """Write the publication's audit row, and its answer for replays of its Idempotency-Key (same transaction).

    Only a keyed publication can be replayed, so only its answer is stored.
    """
    event.response = response_of(event)
    if event.idempotency_key:
        PublicationEvent.objects.filter(pk=event.pk).update(response=event.response)
    record(
        publisher.actor,
        "publication.recorded" if not event.uploaded else "publication.created",
        event.dataset.name,
        {
            "publication": event.pk,
            "key": event.key,
            "op": event.op,
            "label": event.source,
            "size": event.size,
            "sha256": event.sha256,
            "s3_url": event.s3_url,
            "idempotency_key": event.idempotency_key,
        },
    )


def trigger_servers(dataset: Dataset, publisher: Publisher) -> Job | None:
    """Queue an update of the dataset's servers, unless one is already queued (debounce).

    A burst of publications gives one job: the queued job, when it runs,
    sees every publication committed before it starts. Called after the
    publication committed, so a job seen queued here starts after it; only
    starting a job takes the dataset's lock (one start per burst).
    """
    from jobs.services import start_job

    queued = Job.objects.filter(kind=JobKind.UPDATE_ALL, dataset=dataset, status=JobStatus.QUEUED)
    if queued.exists():
        return None
    with _advisory_lock(_TRIGGER_LOCK, str(dataset.pk)):
        if queued.exists():
            return None
        return start_job(
            JobKind.UPDATE_ALL,
            dataset=dataset,
            params={"trigger": "publication"},
            user=publisher.user,
            actor=publisher.actor,
        )


def _empty():
    import io

    return io.BytesIO(b"")
