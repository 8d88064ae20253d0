"""status.json on disk (its fields: dmsupdate.state.status) and the run lock shared by the CLI, `serve` and `watch`."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from dmsupdate.state.status import empty_status


class Busy(Exception):
    """Another run holds the lock (exit code 75)."""


def read_status(path: Path) -> dict[str, Any]:
    """status.json merged over the empty status; a missing or broken file reads as empty."""
    status = empty_status()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return status
    if isinstance(data, dict):
        status.update(data)
    return status


def render_status(status: dict[str, Any]) -> str:
    """JSON with one field per line: readable with `cat`, and encoded by the C encoder
    (an `indent` would switch json to its pure-Python encoder, costly after every operation)."""
    fields = ",\n".join(f"  {json.dumps(name)}: {json.dumps(value)}" for name, value in status.items())
    return "{\n" + fields + "\n}\n"


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Replace status.json atomically (temp file, then rename): readers never see half a file.

    No fsync: the durable record of progress is the ledger (inside the embedded
    store, or SQLite for a remote endpoint); status.json is rebuilt from it at
    the start of every run, so a lost write after a power cut costs nothing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".status-", dir=path.parent)
    _replace(path, fd, Path(tmp), render_status(status).encode())


def _replace(path: Path, fd: int, tmp: Path, data: bytes) -> None:
    """Write `data` to `tmp` (open as `fd`), then rename it over `path`; `tmp` is gone either way."""
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_bytes(path: Path, data: bytes) -> None:
    """The writer thread's write: a few system calls, each letting the run's own thread go on.

    The temporary file's name is fixed per process (one writer per run, under the run
    lock); a run killed mid-write leaves it for the next run's cleanup of `.status-*`.
    """
    tmp = path.parent / f".status-{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    _replace(path, fd, tmp, data)


class StatusWriter:
    """status.json rewritten by a thread of its own while a run applies operations.

    `save` takes the status as it is now (rendered at once: the run goes on changing
    it) and returns; the thread replaces the file by the same atomic rename as
    `write_status`. A rename over the old file makes the file system start writing
    the new one, which takes longer than the render; done here, it overlaps the
    store's next operation instead of delaying it. Snapshots are written in order;
    one saved while the previous is still being written replaces any older one not
    yet written (the newer holds everything the older did). `flush` returns once the
    last saved snapshot is on disk, and raises what a write raised (the run fails
    as it would with `write_status`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._pending: bytes | None = None
        self._writing = False
        self._error: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def save(self, status: dict[str, Any]) -> None:
        text = render_status(status).encode()
        with self._cond:
            self._raise()
            self._pending = text
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="status.json", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self) -> None:
        with self._cond:
            self._cond.wait_for(self._idle)
            self._raise()

    def close(self) -> None:
        """Write what is pending, then stop the thread (a write's error is not raised here)."""
        with self._cond:
            self._cond.wait_for(self._idle)
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _idle(self) -> bool:
        """Nothing left to write (or a write failed); called holding the condition."""
        return (self._pending is None and not self._writing) or self._error is not None

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._pending is None:
                    return
                text, self._pending = self._pending, None
                self._writing = True
            try:
                _write_bytes(self.path, text)
            except BaseException as exc:  # handed to the run at its next save or flush
                with self._cond:
                    self._error = exc
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()


class RunLock:
    """An exclusive `flock` on `logArea/lock`: one run per server, across processes and threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float) -> None:
        """Wait at most `timeout` seconds for the lock; raise Busy when it stays taken."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise Busy(
                        f"another dms-update run holds {self.path} (waited {timeout:g} s); try again later"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @staticmethod
    def is_held(path: Path) -> bool:
        """True when some run holds the lock right now."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False
