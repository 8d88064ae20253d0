"""What a run shows of itself: how far it is, and what it leaves behind (status.json, DESIGN §5).

While a run goes, status.json carries `progress` (`{"done", "total", "bytes"}`: operations
done of the plan, bytes read from the state root), so `serve`'s GET /status and the
control plane's trigger jobs show how far each server is. At a terminal, `update` and
`rebuild` also draw a progress bar (tqdm) on standard error; off a terminal (cron,
`serve`, `watch`) nothing extra is printed. At the end, `store` says what the store holds.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO

from tqdm import tqdm

from dmsupdate.state.plan import Plan
from dmsupdate.state.stores import ObjectStore

# status.json is rewritten at most this often for bytes read inside one long operation (an image).
STATUS_EVERY_SECONDS = 2.0


class RunProgress:
    """Operations done of the plan and bytes read so far; drawn on `out` when given (a terminal)."""

    def __init__(self, plan: Plan, save: Callable[[], None], out: IO[str] | None = None) -> None:
        to_run = plan.to_run
        self.total = len(to_run)
        self.done = 0
        self.bytes = 0
        self._save = save
        self._saved = time.monotonic()
        total_bytes = sum(e.info.size for e in to_run if e.info is not None and e.info.size)
        self._bar = (
            tqdm(
                total=total_bytes or None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=out,
                dynamic_ncols=True,
                bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}, {rate_fmt}]",
            )
            if out is not None
            else None
        )
        self._describe()

    def fields(self) -> dict[str, int]:
        """status.json `progress`."""
        return {"done": self.done, "total": self.total, "bytes": self.bytes}

    def read(self, n: int) -> None:
        """Bytes read from the state root (called by CountingStore as they arrive)."""
        self.bytes += n
        if self._bar is not None:
            self._bar.update(n)
        if time.monotonic() - self._saved >= STATUS_EVERY_SECONDS:
            self._save()
            self._saved = time.monotonic()

    def step(self) -> None:
        """One more operation of the plan done."""
        self.done += 1
        self._saved = time.monotonic()
        self._describe()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _describe(self) -> None:
        if self._bar is not None:
            self._bar.set_description_str(f"{self.done}/{self.total} ops", refresh=True)


class _CountingReader(io.RawIOBase):
    """A stream from the state root that tells RunProgress how many bytes it has read."""

    def __init__(self, raw: BinaryIO, seen: Callable[[int], None]) -> None:
        self._raw = raw
        self._seen = seen

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._raw.read(len(buffer))
        buffer[: len(chunk)] = chunk
        if chunk:
            self._seen(len(chunk))
        return len(chunk)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


class CountingStore:
    """The run's object store, counting the bytes each opened object yields (everything else passes through)."""

    def __init__(self, store: ObjectStore, progress: RunProgress) -> None:
        self._store = store
        self._progress = progress

    def open(self, key: str) -> BinaryIO:
        return _CountingReader(self._store.open(key), self._progress.read)  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def store_facts(db_dir: Path | None, fingerprint: Any, count: Callable[[], int] | None) -> dict[str, Any]:
    """status.json `store`: its kind, quads and bytes where known.

    Quads come from the run's fingerprint when it has one (no second scan), else from
    `count` (the embedded store's full count); bytes are the embedded store's files.
    """
    facts: dict[str, Any] = {"kind": "oxigraph" if db_dir is not None else "sparql"}
    total = fingerprint.get("total") if isinstance(fingerprint, dict) else None
    if isinstance(total, dict) and isinstance(total.get("triples"), int):
        facts["quads"] = total["triples"]
    elif count is not None:
        facts["quads"] = count()
    if db_dir is not None and db_dir.is_dir():
        facts["bytes"] = sum(
            entry.stat().st_size for entry in os.scandir(db_dir) if entry.is_file(follow_symlinks=False)
        )
    return facts
