"""Idempotency-Key: a repeated publication gets the first one's answer, a different one with the same key a 409.

Requests with the same (user, key) are serialised by an advisory lock, so two
concurrent retries cannot both publish.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dmsupdate.errors import Conflict, Invalid
from dmsupdate.locks import advisory_lock
from publications.models import PublicationEvent

_IDEMPOTENCY_LOCK = 0x646D7369  # advisory lock class: one request per (user, Idempotency-Key) at a time
MAX_KEY_LENGTH = 200


def request_fingerprint(params: dict, body_sha256: str) -> str:
    """The request fingerprint compared under one Idempotency-Key: params and body digest."""
    canonical = json.dumps({"params": params, "body": body_sha256}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@contextmanager
def idempotent(user: Any, key: str | None, fingerprint: str) -> Iterator[PublicationEvent | None]:
    """Serialise requests with the same Idempotency-Key; yield the earlier publication, if any.

    Yields the earlier publication with this key and the same fingerprint;
    raises Conflict when the fingerprint differs; yields None when the key is
    new (or absent), so the caller publishes.
    """
    if not key:
        yield None
        return
    if len(key) > MAX_KEY_LENGTH:
        raise Invalid("invalid_idempotency_key", f"Idempotency-Key is limited to {MAX_KEY_LENGTH} characters")
    with advisory_lock(_IDEMPOTENCY_LOCK, f"{user.pk}:{key}"):
        earlier = (
            PublicationEvent.objects.select_related("dataset", "object")
            .filter(user=user, idempotency_key=key)
            .first()
        )
        if earlier is not None and earlier.request_fingerprint != fingerprint:
            raise Conflict(
                "idempotency_conflict",
                f"Idempotency-Key {key!r} was used for a different request (publication {earlier.pk})",
            )
        yield earlier


def remember_answer(event: PublicationEvent, answer: dict) -> None:
    """Keep the first answer of a keyed publication, replayed for its Idempotency-Key.

    Only a keyed publication can be replayed, so only its answer is stored. A
    crash before this leaves the answer empty; a replay then shows the event as it is.
    """
    if event.idempotency_key:
        event.response = answer
        PublicationEvent.objects.filter(pk=event.pk).update(response=answer)
