"""A state root on a local directory (`file:///path`): same layout, keys are paths."""

from __future__ import annotations

import builtins
import hashlib
import os
import shutil
import tempfile
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
    """Objects are files under `base`; writes are atomic (temp file, then link/rename)."""

    def __init__(self, base: str) -> None:
        self.base = Path(base)
        self.root = f"file://{self.base}"
        self.stats = StoreStats(scheme="file")

    def url(self, key: str) -> str:
        return f"file://{self.base / key}"

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StoreError(f"bad key {key!r}")
        return self.base / key

    def _info(self, key: str, path: Path) -> ObjectInfo:
        st = path.stat()
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
        yield from self._walk(self.base, "", prefix, start_after or "")

    def _walk(self, folder: Path, rel: str, prefix: str, after: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
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
                yield from self._walk(Path(entry.path), key, prefix, after)
            elif key.startswith(prefix) and key > after:
                yield self._info(key, Path(entry.path))

    def head(self, key: str) -> ObjectInfo:
        self.stats.count("head")
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r} under {self.root}")
        return self._info(key, path)

    def open(self, key: str) -> BinaryIO:
        self.stats.count("get")
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key!r} under {self.root}") from exc

    def _write_temp(self, path: Path, body: BinaryIO, size: int, md5: str | None) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
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
                raise StoreError(f"wrote {written} bytes for {path.name}, expected {size}")
            if md5 and digest.hexdigest() != md5:
                raise StoreError(f"MD5 of {path.name} differs from the one announced")
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def put_new(self, key: str, body: BinaryIO, size: int, md5: str | None = None) -> ObjectInfo:
        self.stats.count("put")
        path = self._path(key)
        tmp = self._write_temp(path, body, size, md5)
        try:
            os.link(tmp, path)  # atomic and exclusive: fails if the key exists
        except FileExistsError as exc:
            raise ObjectExists(f"{key!r} already exists under {self.root}") from exc
        finally:
            os.unlink(tmp)
        return self._info(key, path)

    def put(self, key: str, body: BinaryIO, size: int) -> ObjectInfo:
        self.stats.count("put")
        path = self._path(key)
        tmp = self._write_temp(path, body, size, None)
        os.replace(tmp, path)
        return self._info(key, path)

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
                self._path(key).unlink(missing_ok=True)
            except OSError:
                failed.append(key)
        return failed

    def remove_root(self) -> None:
        """Delete the whole root (used by tests and the demo reset)."""
        shutil.rmtree(self.base, ignore_errors=True)
