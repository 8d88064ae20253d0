"""Publishing: put a validated object under a dataset's root, or record one a publisher put there.

Order of writes, for crash safety (DESIGN §6): the effective time is allocated
and the StateObject recorded `unpublished` in one transaction; then the object
is written with an exclusive put; then, verified, it is marked `published`
together with its PublicationEvent and audit row. A failure between the steps
leaves at most an `unpublished` row (and perhaps its object), which GC collects
after the grace period; it never leaves a `published` row without its object.

Refusals are domain errors (dmsupdate.errors); the API maps them to HTTP.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlparse

from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from accounts.scopes import UNLIMITED, PublishScope
from audit.services import record
from dmsupdate.errors import Conflict, Invalid, StoreFailed, Unavailable
from dmsupdate.state.keys import (
    GRAPH_OPS,
    UPDATE_OPS,
    EffectiveTime,
    InvalidKey,
    StateKey,
    make_key,
    parse_key,
)
from dmsupdate.state.stores import ObjectExists, ObjectInfo, ObjectNotFound, StoreError, StoreUnavailable
from publications.head import bump_head, publish_and_move_head
from publications.models import Dataset, ObjectKind, ObjectState, PublicationEvent, StateObject
from publications.signals import update_published
from publications.tags import object_tags, parse_tags
from publications.validation import (
    Upload,
    check_layout,
    check_recorded_content,
    check_recorded_key,
    infer_format,
    validate_content,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Publisher:
    """Who publishes: the user (for idempotency keys), how the audit log names them, and their scope."""

    user: Any
    actor: str
    scope: PublishScope = field(default=UNLIMITED)


@dataclass(frozen=True)
class Target:
    """Where and what to publish, checked: the dataset, label, op and graph or component."""

    dataset: Dataset
    label: str
    op: str
    arg: str | None
    tags: tuple[str, ...] = ()


def dataset_named(name: object) -> Dataset:
    """The dataset a request names; Invalid when it does not exist."""
    dataset = Dataset.objects.filter(name=str(name or "")).first()
    if dataset is None:
        raise Invalid("unknown_dataset", f"no dataset named {name!r}")
    return dataset


def _arg(op: str, graph: str, component: str) -> str | None:
    """The key's argument: the graph for graph ops, the component for postproc."""
    if op in GRAPH_OPS:
        if component:
            raise Invalid("invalid_key", f"{op} takes a graph, not a component")
        return graph or None
    if op == "postproc":
        if graph:
            raise Invalid("invalid_key", "postproc takes a component, not a graph")
        return component or None
    if graph or component:
        raise Invalid("invalid_key", f"{op} takes no graph or component")
    return None


def check_target(params: dict[str, str], publisher: Publisher) -> Target:
    """Check what needs no body, once: the dataset, the publisher's scope, label, op and graph.

    `params` holds `dataset`, `op`, `label`, `graph`, `component` as given.
    """
    for name in ("dataset", "op", "label"):
        if not params.get(name):
            raise Invalid("missing_parameter", f"{name} is required")
    op = params["op"]
    if op not in UPDATE_OPS:
        raise Invalid("invalid_op", f"unknown op {op!r}; expected one of {', '.join(UPDATE_OPS)}")
    dataset = dataset_named(params["dataset"])
    publisher.scope.check(dataset, params["label"])
    arg = _arg(op, params.get("graph", ""), params.get("component", ""))
    check_layout(params["label"], op, arg, None)
    return Target(dataset, params["label"], op, arg, tuple(parse_tags(params.get("tags", ""))))


@dataclass(frozen=True)
class Content:
    """A checked body and the format its key will carry."""

    upload: Upload | None
    format: str

    @property
    def sha256(self) -> str:
        return self.upload.sha256 if self.upload else hashlib.sha256(b"").hexdigest()


def check_content(target: Target, upload: Upload | None, given_format: str, media_type: str) -> Content:
    """Tell the body's format (as given, from its file name, or its media type) and parse it whole."""
    fmt = infer_format(
        target.op,
        given_format,
        upload.filename if upload else "",
        media_type,
        bool(upload and upload.size and upload.gzipped),
    )
    check_layout(target.label, target.op, target.arg, fmt)
    validate_content(upload, target.op, fmt, allow_drop_all=target.dataset.allow_drop_all)
    return Content(upload, fmt)


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


def publish_upload(
    target: Target,
    content: Content,
    publisher: Publisher,
    idempotency_key: str | None = None,
    fingerprint: str = "",
) -> PublicationEvent:
    """Write a checked body under a new key of the dataset and record it published.

    Raises Unavailable when the store or the database is down (nothing is
    published), StoreFailed when the store kept something other than what was
    sent, Conflict when the key or the Idempotency-Key is taken.
    """
    dataset, upload = target.dataset, content.upload
    size = upload.size if upload else 0
    md5 = upload.md5 if upload else hashlib.md5(b"").hexdigest()
    now = timezone.now()
    with transaction.atomic():
        effective = allocate_time(dataset)
        key = make_key(effective, target.label, target.op, target.arg, content.format or None)
        fields = StateObject.fields_from_key(key)
        fields["tags"] = object_tags(effective.nanos, target.tags)
        obj = StateObject.objects.create(
            dataset=dataset,
            key=key.key,
            **fields,
            size=size,
            sha256=content.sha256,
            state=ObjectState.UNPUBLISHED,
            first_seen=now,
            last_seen=now,
            state_changed_at=now,
        )
    store = dataset.open_store()
    body: IO[bytes] = upload.file if upload else io.BytesIO(b"")
    body.seek(0)
    try:
        info = store.put_new(key.key, body, size, md5)
    except ObjectExists as exc:
        raise Conflict("key_taken", f"{key.key} already exists under {dataset.s3root}") from exc
    except StoreUnavailable as exc:
        record(publisher.actor, "publication.failed", dataset.name, {"key": key.key, "error": str(exc)})
        raise Unavailable("store_unavailable", f"the state root is unavailable, retry later: {exc}") from exc
    except StoreError as exc:
        record(publisher.actor, "publication.failed", dataset.name, {"key": key.key, "error": str(exc)})
        raise StoreFailed("store_error", f"the state root refused the object: {exc}") from exc
    if info.size != size or (info.md5 is not None and info.md5 != md5):
        record(publisher.actor, "publication.failed", dataset.name, {"key": key.key, "error": "checksum"})
        raise StoreFailed(
            "store_integrity",
            f"the store kept {info.size} bytes (ETag {info.etag}) for {size} bytes (MD5 {md5}); not published",
        )
    try:
        event = _mark_published(obj, info, key, store.url(key.key), publisher, idempotency_key, fingerprint)
    except (OperationalError, InterfaceError) as exc:
        # The database went away after the upload: withdraw the object so agents never
        # replay an update the publisher was told failed (and will send again).
        try:
            store.delete_many([key.key])
        except StoreError:
            log.error("publication of %s failed and the object could not be withdrawn", key.key)
        raise Unavailable(
            "database_unavailable",
            f"the registry database became unavailable; {key.key} was withdrawn, retry later",
            retry_after=5,
        ) from exc
    except IntegrityError as exc:
        # Only the (user, Idempotency-Key) constraint can fail here: a concurrent request
        # with the same key won (possible without PostgreSQL's advisory lock). This
        # object stays `unpublished`, for GC.
        raise Conflict("idempotency_conflict", f"Idempotency-Key {idempotency_key!r} is in use") from exc
    update_published.send(Dataset, dataset=dataset, user=publisher.user, actor=publisher.actor)
    return event


def _event_user(publisher: Publisher) -> Any:
    return publisher.user if getattr(publisher.user, "is_authenticated", False) else None


def _mark_published(
    obj: StateObject,
    info: ObjectInfo,
    key: StateKey,
    url: str,
    publisher: Publisher,
    idempotency_key: str | None,
    fingerprint: str,
) -> PublicationEvent:
    """Mark the verified object published with its event and audit row, in one transaction."""
    with transaction.atomic():
        obj.state, obj.etag, obj.state_changed_at = ObjectState.PUBLISHED, info.etag or "", timezone.now()
        # One statement: the object is published and its dataset's head moves (publications.head).
        publish_and_move_head(obj.pk, obj.etag, obj.state_changed_at)
        event = PublicationEvent.objects.create(
            dataset=obj.dataset,
            object=obj,
            key=obj.key,
            source=key.label or "",
            op=key.op or "",
            effective_ns=key.effective.nanos if key.effective else 0,
            user=_event_user(publisher),
            actor=publisher.actor,
            s3_url=url,
            size=obj.size,
            sha256=obj.sha256,
            uploaded=True,
            idempotency_key=idempotency_key or None,
            request_fingerprint=fingerprint,
            tags=obj.tags,
        )
        _audit(event, publisher)
    return event


def key_under_root(dataset: Dataset, url: str) -> str:
    """The key of `url` relative to the dataset's root; Invalid when it lies outside the root."""
    root = dataset.s3root.rstrip("/") + "/"
    if not isinstance(url, str) or not url.startswith(root):
        raise Invalid("outside_root", f"{url!r} is not under the dataset's root {root}")
    key = url[len(root) :]
    if not key or ".." in key.split("/") or "//" in key or urlparse(url).query:
        raise Invalid("invalid_key", f"{url!r} does not name an object under {root}")
    return key


def record_external(
    dataset: Dataset,
    *,
    s3_url: str,
    publisher: Publisher,
    size: int | None = None,
    md5: str | None = None,
    sha256: str = "",
    idempotency_key: str | None = None,
    fingerprint: str = "",
    tags: list[str] | tuple[str, ...] = (),
) -> PublicationEvent:
    """Record an object a publisher already put under the dataset's root (checked with HEAD)."""
    publisher.scope.check(dataset)
    key = key_under_root(dataset, s3_url)
    try:
        parsed = parse_key(key)
    except InvalidKey as exc:
        raise Invalid("invalid_key", str(exc)) from exc
    if parsed.kind not in (ObjectKind.UPDATE, ObjectKind.IMAGE):
        raise Invalid("invalid_key", f"{key} is neither an update nor an image; nothing to publish")
    publisher.scope.check(dataset, parsed.label or "")
    check_recorded_key(parsed)
    store = dataset.open_store()
    try:
        info = store.head(key)
    except ObjectNotFound as exc:
        raise Invalid("object_not_found", f"no object at {s3_url}") from exc
    except StoreUnavailable as exc:
        raise Unavailable("store_unavailable", f"the state root is unavailable, retry later: {exc}") from exc
    except StoreError as exc:
        raise StoreFailed("store_error", str(exc)) from exc
    if size is not None and info.size != size:
        raise Invalid("size_mismatch", f"{key} holds {info.size} bytes, not {size}")
    if md5 and info.md5 and info.md5 != md5.lower():
        raise Invalid("checksum_mismatch", f"{key} has MD5 {info.md5}, not {md5}")
    check_recorded_content(parsed, store, dataset.allow_drop_all)
    now = timezone.now()
    fields = {
        **StateObject.fields_from_key(parsed),
        "size": info.size,
        "etag": info.etag or "",
        "sha256": sha256,
        "state": ObjectState.PUBLISHED,
        "last_seen": now,
        "state_changed_at": now,
    }
    fields["tags"] = object_tags(parsed.effective.nanos if parsed.effective else None, tags)
    with transaction.atomic():
        Dataset.objects.select_for_update().get(pk=dataset.pk)
        if PublicationEvent.objects.filter(dataset=dataset, key=key).exists():
            raise Conflict("already_recorded", f"{key} was already published")
        obj, _ = StateObject.objects.update_or_create(
            dataset=dataset,
            key=key,
            defaults={**fields, "error": ""},
            create_defaults={**fields, "first_seen": now},
        )
        event = PublicationEvent.objects.create(
            dataset=dataset,
            object=obj,
            key=key,
            source=parsed.label or "",
            op=parsed.op or "",
            effective_ns=parsed.effective.nanos if parsed.effective else 0,
            user=_event_user(publisher),
            actor=publisher.actor,
            s3_url=store.url(key),
            size=info.size,
            sha256=sha256,
            uploaded=False,
            idempotency_key=idempotency_key or None,
            request_fingerprint=fingerprint,
            tags=fields["tags"],
        )
        _audit(event, publisher)
        bump_head(dataset.pk)
    if parsed.kind == ObjectKind.UPDATE:
        update_published.send(Dataset, dataset=dataset, user=publisher.user, actor=publisher.actor)
    return event


def _audit(event: PublicationEvent, publisher: Publisher) -> None:
    """The publication's audit row (in the publication's transaction)."""
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
        }
        | ({"tags": event.given_tags} if event.given_tags else {}),
    )
