"""PostgreSQL session advisory locks: one holder at a time across every web and worker process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def advisory_lock(namespace: int, key: int | str, wait: bool = True) -> Iterator[bool]:
    """Hold the lock (namespace, key) for the block, across transactions; yield whether it is held.

    With `wait=False` the block runs at once with False when someone else holds
    it. On databases without advisory locks (SQLite: one writer anyway) it is a
    no-op that yields True. Text keys are hashed by PostgreSQL's `hashtext`.
    """
    if connection.vendor != "postgresql":
        yield True
        return
    arg = "%s" if isinstance(key, int) else "hashtext(%s)"
    take = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
    with connection.cursor() as cur:
        cur.execute(f"SELECT {take}(%s, {arg})", [namespace, key])
        row = cur.fetchone()
    held = True if wait else bool(row and row[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cur:
                cur.execute(f"SELECT pg_advisory_unlock(%s, {arg})", [namespace, key])
