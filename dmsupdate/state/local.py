"""A state root on a local directory (`file:///path`): same layout, keys are paths."""

from __future__ import annotations

import builtins
import errno
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from dmsupdate.state.stores import (
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    StoreError,
    StoreStats,
)

TEMP_PREFIX = ".tmp-"


class LocalStore:
    """Objects are files under `base`; writes are atomic (temp file, then link/rename).

    Nothing below the root is reached through a symbolic link, for reading or
    writing: every folder on a key's path is opened relative to its parent with
    O_NOFOLLOW (no window between a check and its use), so a link planted in the
    root cannot lead an agent to read, or the publication API to write, outside
    it. A listed link is reported as an object that cannot be read.
    """

    def __init__(self, base: str) -> None:
        self.base = Path(base)
        self.root = f"file://{self.base}"
        self.stats = StoreStats(scheme="file")

    def url(self, key: str) -> str:
        return f"file://{self.base / key}"

    def _parts(self, key: str) -> list[str]:
        parts = key.split("/")
        if not key or key.startswith("/") or ".." in parts or "" in parts or "." in parts:
            raise StoreError(f"bad key {key!r}")
        return parts

    def _folder(self, key: str, folders: builtins.list[str], create: bool = False) -> int:
        """A descriptor of the folder `folders` below the root, refusing links on the way (the caller closes it)."""
        if create:
            self.base.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.base, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"state root {self.root} does not exist") from exc
        try:
            for name in folders:
                if create:
                    try:
                        os.mkdir(name, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = child
        except FileNotFoundError as exc:
            os.close(fd)
            raise ObjectNotFound(f"no object {key!r} under {self.root}") from exc
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise StoreError(
                    f"{key!r}: a folder on its path is a symbolic link or a file; refused"
                ) from exc
            raise
        return fd

    def _stat(self, key: str) -> os.stat_result:
        *folders, name = self._parts(key)
        fd = self._folder(key, folders)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key!r} under {self.root}") from exc
        finally:
            os.close(fd)
        if stat.S_ISLNK(st.st_mode):
            raise StoreError(f"{key!r} is a symbolic link; refused")
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"no object {key!r} under {self.root}")
        return st

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=None,
            last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
        )

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        self.stats.count("list")
        if not self.base.is_dir():
            raise StoreError(f"state root {self.root} is not a directory")
        fd = os.open(self.base, os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield from self._walk(fd, "", prefix, start_after or "")
        finally:
            os.close(fd)

    def _walk(self, fd: int, rel: str, prefix: str, after: str) -> Iterator[ObjectInfo]:
        with os.scandir(fd) as scan:
            entries = list(scan)
        # Order entries as their keys sort ("a/" after "a-b"), like an S3 listing.
        named = sorted(
            (e.name + ("/" if e.is_dir(follow_symlinks=False) else ""), e)
            for e in entries
            if not e.name.startswith(TEMP_PREFIX)
        )
        for name, entry in named:
            key = rel + name
            if name.endswith("/"):
                if not (key.startswith(prefix) or prefix.startswith(key)):
                    continue
                if after and key < after and not after.startswith(key):
                    continue  # the whole folder sorts before start_after
                try:
                    child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # removed (or replaced) since it was listed
                try:
                    yield from self._walk(child, key, prefix, after)
                finally:
                    os.close(child)
            elif key.startswith(prefix) and key > after:
                try:
                    yield self._info(key, entry.stat(follow_symlinks=False))
                except FileNotFoundError:
                    continue

    def head(self, key: str) -> ObjectInfo:
        self.stats.count("head")
        return self._info(key, self._stat(key))

    def open(self, key: str) -> BinaryIO:
        self.stats.count("get")
        *folders, name = self._parts(key)
        folder = self._folder(key, folders)
        try:
            # O_NONBLOCK: a FIFO planted under the root must not hang the reader.
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key!r} under {self.root}") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"{key!r} is a symbolic link; refused") from exc
            raise
        finally:
            os.close(folder)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"{key!r} is not a regular file; refused")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def _write(self, key: str, body: BinaryIO, size: int, md5: str | None, install) -> ObjectInfo:
        """Write a temp file beside the key's place, check it, then `install(folder_fd, temp, name)` it."""
        *folders, name = self._parts(key)
        folder = self._folder(key, folders, create=True)
        try:
            tmp = f"{TEMP_PREFIX}{secrets.token_hex(8)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=folder)
            digest = hashlib.md5()
            written = 0
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := body.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if written != size:
                    raise StoreError(f"wrote {written} bytes for {name}, expected {size}")
                if md5 and digest.hexdigest() != md5:
                    raise StoreError(f"MD5 of {name} differs from the one announced")
                install(folder, tmp, name)
            finally:
                try:
                    os.unlink(tmp, dir_fd=folder)
                except FileNotFoundError:
                    pass
            return self._info(key, os.stat(name, dir_fd=folder, follow_symlinks=False))
        finally:
            os.close(folder)

    def put_new(self, key: str, body: BinaryIO, size: int, md5: str | None = None) -> ObjectInfo:
        self.stats.count("put")

        def link(folder: int, tmp: str, name: str) -> None:
            try:
                # Atomic and exclusive: fails if the key exists (a link planted there included).
                os.link(tmp, name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
            except FileExistsError as exc:
                raise ObjectExists(f"{key!r} already exists under {self.root}") from exc

        return self._write(key, body, size, md5, link)

    def put(self, key: str, body: BinaryIO, size: int) -> ObjectInfo:
        self.stats.count("put")

        def replace(folder: int, tmp: str, name: str) -> None:
            os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)  # replaces a link, never follows it

        return self._write(key, body, size, None, replace)

    def delete_many(self, keys: Iterable[str]) -> builtins.list[str]:
        failed: builtins.list[str] = []
        batch: builtins.list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) == 1000:
                failed += self._delete_batch(batch)
                batch = []
        if batch:
            failed += self._delete_batch(batch)
        return failed

    def _delete_batch(self, keys: builtins.list[str]) -> builtins.list[str]:
        self.stats.count("delete")
        failed = []
        for key in keys:
            try:
                *folders, name = self._parts(key)
                folder = self._folder(key, folders)
            except ObjectNotFound:
                continue
            except (StoreError, OSError):
                failed.append(key)
                continue
            try:
                os.unlink(name, dir_fd=folder)  # a link itself is removed, never what it points to
            except FileNotFoundError:
                pass
            except OSError:
                failed.append(key)
            finally:
                os.close(folder)
        return failed

    def remove_root(self) -> None:
        """Delete the whole root (used by tests and the demo reset)."""
        shutil.rmtree(self.base, ignore_errors=True)
