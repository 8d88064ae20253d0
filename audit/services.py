"""Writing and verifying the audit log."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.middleware import current_request_id
from audit.models import AuditEvent

log = logging.getLogger("dmsupdate.audit")

GENESIS = "0" * 64
_LOCK_ID = 0x646D7361  # PostgreSQL advisory lock serialising appends to the chain


def actor_name(user: Any = None, token: Any = None) -> str:
    """How an actor is written in the log: `user`, `user (token NAME)` or `system`."""
    if token is not None:
        return f"{token.user.get_username()} (token {token.name})"
    if user is not None and getattr(user, "is_authenticated", False):
        return user.get_username()
    return "system"


def record(
    actor: str, action: str, target: str = "", details: dict | None = None, request_id: str | None = None
) -> AuditEvent:
    """Append one event to the chain.

    Appends are serialised (advisory lock on PostgreSQL, a write lock on SQLite)
    so each row's `prev_hash` is the hash of the row before it. Inside a caller's
    transaction the row commits (or rolls back) with the caller's writes; the lock
    is held from here to that commit, so callers record last.
    """
    clean = json.loads(json.dumps(details or {}, default=str))
    # No savepoint: a failed append fails the caller's whole transaction anyway.
    with transaction.atomic(savepoint=False), connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])
        # Read after the lock is granted, so it sees the last append committed.
        cur.execute(f"SELECT hash FROM {AuditEvent._meta.db_table} ORDER BY id DESC LIMIT 1")
        last = cur.fetchone()
        event = AuditEvent(
            at=timezone.now(),
            actor=actor[:200],
            action=action,
            target=str(target)[:1024],
            request_id=request_id if request_id is not None else current_request_id(),
            details=clean,
            prev_hash=last[0] if last else GENESIS,
        )
        event.hash = event.compute_hash()
        event.save(force_insert=True)
    # The same event in the structured log: its request_id field matches the audit row's.
    log.info("audit #%s %s %s by %s", event.pk, action, event.target, event.actor)
    return event


@dataclass
class ChainCheck:
    """The outcome of `verify_chain`: rows checked, and what is wrong (the first broken row, if one is)."""

    checked: int
    broken_id: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


@dataclass(frozen=True)
class Anchor:
    """The chain's head as recorded outside the table (with each registry backup): a row id and its hash."""

    id: int
    hash: str


def head() -> Anchor | None:
    """The newest row of the chain, to be recorded outside the table."""
    row = AuditEvent.objects.order_by("-id").values_list("id", "hash").first()
    return Anchor(*row) if row else None


def verify_chain(batch: int = 5000, anchor: Anchor | None = None) -> ChainCheck:
    """Walk the log in order and report the first row whose hash or link is wrong.

    An empty log is not intact (nothing shows it was not emptied), and with
    an `anchor` the chain must still hold that row with that hash: rows cut
    from its end, or a chain rebuilt after a TRUNCATE, are found.
    """
    prev = GENESIS
    checked = 0
    last_id = 0
    anchored = anchor is None
    while True:
        rows = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id")[:batch])
        if not rows:
            break
        for row in rows:
            if row.prev_hash != prev:
                return ChainCheck(
                    checked,
                    row.id,
                    "its prev_hash does not match the row before it (a row was removed or inserted)",
                )
            if row.compute_hash() != row.hash:
                return ChainCheck(
                    checked, row.id, "its content does not match its hash (the row was changed)"
                )
            if anchor is not None and row.id == anchor.id:
                if row.hash != anchor.hash:
                    return ChainCheck(
                        checked, row.id, "it differs from the chain's head recorded outside the table"
                    )
                anchored = True
            prev = row.hash
            checked += 1
            last_id = row.id
    if checked == 0:
        return ChainCheck(0, None, "the audit log is empty: nothing shows it was not emptied")
    if not anchored:
        assert anchor is not None
        return ChainCheck(
            checked,
            None,
            f"event {anchor.id}, the chain's head recorded outside the table, is gone: the log was cut or rebuilt",
        )
    return ChainCheck(checked)
