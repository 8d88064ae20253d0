"""The next operation's object, read and checked while the endpoint works on the current one.

A replay into a SPARQL endpoint spends most of its time waiting for the store's answer;
reading the next object from the state root (verifying its size and MD5, screening and
spooling it) fits in that wait. Only reading happens ahead: nothing reaches the store
before its turn, so a crash still repeats at most the operation in flight (DESIGN §4),
and a failure to read is raised when that operation's turn comes, naming its key.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class ReadAhead:
    """At most one object read ahead, by a thread of its own, for the operation with `key`."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[str, Future[Any]] | None = None

    def start(self, key: str, read: Callable[[], Any]) -> None:
        """Begin `read()` for `key` (whatever was read ahead before and not taken is closed)."""
        self.discard()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
        self._pending = (key, self._pool.submit(read))

    def take(self, key: str, read: Callable[[], Any]) -> Any:
        """What was read ahead for `key` (raising what the read raised), else `read()` now."""
        pending, self._pending = self._pending, None
        if pending is not None:
            if pending[0] == key:
                return pending[1].result()
            _dispose(pending[1])
        return read()

    def discard(self) -> None:
        """Close what was read ahead and not taken (the run stopped before its turn)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            _dispose(pending[1])

    def close(self) -> None:
        self.discard()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _dispose(future: Future[Any]) -> None:
    try:
        value = future.result()
    except Exception:  # its turn never came: nobody is told
        return
    close = getattr(value, "close", None)
    if callable(close):
        close()
