"""A local cache of images and dumps (seed 004: "local caches for accessed files"), in `logArea/cache/`.

The agent reads each image or dump it installs through the cache: the bytes are
kept as they stream by and committed once the whole object was read with the size
(and MD5, where the ETag is one) the listing announced. The next install of the
same key with the same size and ETag reads the cached copy, after checking its size
and sha256 against what was recorded: `rebuild` of an unchanged image downloads
nothing. The cache holds at most `cache_max_bytes`; older entries go first.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from dmsupdate.state.stores import ObjectInfo, ObjectStore

log = logging.getLogger("dmsupdate.agent")
CACHED_PREFIX = "images/"
# Left unread by a consumer that stopped early (a tar's end padding): read to complete the entry.
DRAIN_LIMIT = 1 << 20


def _name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:40]


class ImageCache:
    """The files of the cache: `<name>.data` and `<name>.json` ({key, size, etag, sha256})."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0

    def wants(self, info: ObjectInfo) -> bool:
        return self.max_bytes > 0 and 0 < info.size <= self.max_bytes

    def lookup(self, info: ObjectInfo) -> BinaryIO | None:
        """The cached copy of `info`, checked by size, ETag and sha256; None (and the entry removed) otherwise."""
        data, meta = self._paths(info.key)
        try:
            recorded = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if (
            not isinstance(recorded, dict)
            or recorded.get("key") != info.key
            or recorded.get("size") != info.size
            or recorded.get("etag") != (info.etag or "")
        ):
            self._drop(info.key)
            return None
        try:
            stream = open(data, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        except OSError:
            self._drop(info.key)
            return None
        digest, size = hashlib.sha256(), 0
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
        if size != info.size or digest.hexdigest() != recorded.get("sha256"):
            stream.close()
            log.warning("cached %s does not match what was recorded; downloading it again", info.key)
            self._drop(info.key)
            return None
        stream.seek(0)
        os.utime(meta)  # recently used: evicted last
        self.hits += 1
        return stream

    def fill(self, raw: BinaryIO, info: ObjectInfo) -> BinaryIO:
        """`raw` (the download), copied into the cache as it is read."""
        self.misses += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        return io.BufferedReader(_Filling(raw, info, self), buffer_size=1 << 20)  # type: ignore[return-value]

    def commit(self, tmp: str, info: ObjectInfo, sha256: str) -> None:
        data, meta = self._paths(info.key)
        os.replace(tmp, data)
        record = {"key": info.key, "size": info.size, "etag": info.etag or "", "sha256": sha256}
        meta.write_text(json.dumps(record), encoding="utf-8")
        self._evict(keep=info.key)

    def entries(self) -> list[tuple[float, int, str]]:
        """(last used, bytes, key) of every entry, oldest first."""
        found = []
        for meta in self.folder.glob("*.json"):
            try:
                record = json.loads(meta.read_text(encoding="utf-8"))
                found.append((meta.stat().st_mtime, int(record["size"]), str(record["key"])))
            except (OSError, ValueError, KeyError, TypeError):
                meta.unlink(missing_ok=True)
        return sorted(found)

    def _evict(self, keep: str) -> None:
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        for _, size, key in entries:
            if total <= self.max_bytes:
                break
            if key != keep:
                self._drop(key)
                total -= size

    def _paths(self, key: str) -> tuple[Path, Path]:
        name = _name(key)
        return self.folder / f"{name}.data", self.folder / f"{name}.json"

    def _drop(self, key: str) -> None:
        for path in self._paths(key):
            path.unlink(missing_ok=True)


class _Filling(io.RawIOBase):
    """Reads the download and writes what it read to a temporary file; commits it when complete and intact."""

    def __init__(self, raw: BinaryIO, info: ObjectInfo, cache: ImageCache) -> None:
        self._raw, self._info, self._cache = raw, info, cache
        fd, self._tmp = tempfile.mkstemp(prefix=".fill-", dir=cache.folder)
        self._out: BinaryIO | None = os.fdopen(fd, "wb")
        self._sha, self._md5, self._size = hashlib.sha256(), hashlib.md5(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._raw.readinto(buffer) if hasattr(self._raw, "readinto") else self._copy_into(buffer)
        if n and self._out is not None:
            chunk = bytes(memoryview(buffer)[:n])
            self._out.write(chunk)
            self._sha.update(chunk)
            self._md5.update(chunk)
            self._size += n
        elif not n:
            self._finish()
        return n

    def _copy_into(self, buffer: bytearray | memoryview) -> int:
        data = self._raw.read(len(buffer))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        if self._out is None:
            return
        self._out.close()
        self._out = None
        expected_md5 = self._info.md5
        if self._size == self._info.size and (expected_md5 is None or expected_md5 == self._md5.hexdigest()):
            self._cache.commit(self._tmp, self._info, self._sha.hexdigest())
        else:
            os.unlink(self._tmp)

    def close(self) -> None:
        try:
            if self._out is not None and self._info.size - self._size <= DRAIN_LIMIT:
                buffer = bytearray(1 << 16)
                while self.readinto(buffer):
                    pass
        except Exception:  # noqa: BLE001 - a failed drain only means no cache entry
            pass
        finally:
            if self._out is not None:
                self._out.close()
                self._out = None
                os.unlink(self._tmp)
            self._raw.close()
            super().close()


class CachedSource:
    """An object store whose images and dumps are read through an ImageCache; everything else passes through."""

    def __init__(self, store: ObjectStore, cache: ImageCache) -> None:
        self._store = store
        self.cache = cache
        self._listed: dict[str, ObjectInfo] = {}

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        for info in self._store.list(prefix, start_after):
            if info.key.startswith(CACHED_PREFIX):
                self._listed[info.key] = info
            yield info

    def open(self, key: str) -> BinaryIO:
        info = self._listed.get(key)
        if info is None or not self.cache.wants(info):
            return self._store.open(key)
        cached = self.cache.lookup(info)
        if cached is not None:
            log.info("installing %s from the local cache", key)
            return cached
        return self.cache.fill(self._store.open(key), info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
