"""The object-store interface over a state root (`s3://` or `file://`).

Both halves of the product go through `open_store`: the agent to list and
stream updates, the control plane to reconcile, publish, collect garbage and
back up. Only `dmsupdate.state.s3` talks to boto3.
"""

from __future__ import annotations

import builtins
import gzip
import hashlib
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

MD5_ETAG = re.compile(r"[0-9a-f]{32}")
DELETE_BATCH = 1000


class StoreError(Exception):
    """A state-root operation failed; the message says which and why."""


class StoreUnavailable(StoreError):
    """The store could not be reached or answered with a server error (retry later)."""


class ObjectNotFound(StoreError):
    """The key does not exist under the root."""


class ObjectExists(StoreError):
    """An exclusive write found the key already taken."""


class IntegrityError(StoreError):
    """What was read does not match the size or MD5 the store announced."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object under a root, as a listing or HEAD reports it."""

    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None

    @property
    def md5(self) -> str | None:
        """The content MD5 when the ETag is one (not for multipart uploads)."""
        etag = (self.etag or "").strip('"')
        return etag if MD5_ETAG.fullmatch(etag) else None


# Requests made by this process, by (scheme, kind); exported on the control plane's /metrics.
REQUESTS: Counter[tuple[str, str]] = Counter()


@dataclass
class StoreStats:
    """Request counters of one store, read by tests and benchmarks (e.g. ListObjectsV2 calls)."""

    scheme: str = "s3"
    list_calls: int = 0
    get_calls: int = 0
    put_calls: int = 0
    head_calls: int = 0
    delete_calls: int = 0

    def count(self, kind: str) -> None:
        """Count one request of `kind` (list, get, put, head, delete)."""
        setattr(self, f"{kind}_calls", getattr(self, f"{kind}_calls") + 1)
        REQUESTS[(self.scheme, kind)] += 1


class ObjectStore(Protocol):
    """What every state root offers. Keys are relative to the root."""

    root: str
    stats: StoreStats

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Yield objects whose key starts with `prefix`, in key order, after `start_after`."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """Describe one object; raise ObjectNotFound when absent."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open the raw bytes of an object for streaming."""
        ...

    def put_new(self, key: str, body: BinaryIO, size: int, md5: str | None = None) -> ObjectInfo:
        """Write an object that must not exist yet; raise ObjectExists if it does.

        The object is either fully there or absent: readers never see a partial write.
        """
        ...

    def put(self, key: str, body: BinaryIO, size: int) -> ObjectInfo:
        """Write or overwrite an object (used for registry backups only)."""
        ...

    def delete_many(self, keys: Iterable[str]) -> builtins.list[str]:
        """Delete keys in batches of at most 1,000; return the keys that failed."""
        ...

    def url(self, key: str) -> str:
        """The absolute URL of a key (`s3://bucket/prefix/key` or `file:///...`)."""
        ...


def open_store(root: str, endpoint: str | None = None) -> ObjectStore:
    """Open a state root; raise StoreError for a root that is not `s3://` or `file://`."""
    parsed = urlparse(root)
    if parsed.scheme == "file":
        from dmsupdate.state.local import LocalStore

        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            # file://data/state would silently mean /state: a relative path given with two slashes.
            raise StoreError(f"file:// roots need an absolute path (file:///PATH): {root!r}")
        return LocalStore(parsed.path)
    if parsed.scheme == "s3":
        from dmsupdate.state.s3 import S3Store

        if not parsed.netloc:
            raise StoreError(f"s3:// roots need a bucket: {root!r}")
        return S3Store(parsed.netloc, parsed.path.strip("/"), endpoint=endpoint)
    raise StoreError(f"state root must be s3://BUCKET/PREFIX or file:///PATH, not {root!r}")


class VerifyingReader(io.RawIOBase):
    """Pass bytes through while counting them and hashing them with MD5.

    At end of stream it raises IntegrityError when the size or the MD5 differ
    from what the store announced, so a truncated download is never applied.
    """

    def __init__(self, raw: BinaryIO, info: ObjectInfo) -> None:
        self._raw = raw
        self._info = info
        self._md5 = hashlib.md5() if info.md5 else None
        self._sha256 = hashlib.sha256()
        self.read_bytes = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._raw.read(len(buffer))
        n = len(chunk)
        if n == 0:
            self._check()
            return 0
        buffer[:n] = chunk
        self.read_bytes += n
        if self._md5 is not None:
            self._md5.update(chunk)
        self._sha256.update(chunk)
        return n

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        key = self._info.key
        if self.read_bytes != self._info.size:
            raise IntegrityError(
                f"{key}: read {self.read_bytes} bytes, the store announced {self._info.size}"
            )
        if self._md5 is not None and self._md5.hexdigest() != self._info.md5:
            raise IntegrityError(f"{key}: MD5 {self._md5.hexdigest()} differs from ETag {self._info.md5}")

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def open_verified(store: ObjectStore, info: ObjectInfo, decompress: bool | None = None) -> BinaryIO:
    """Stream an object's content, verified against its size and MD5.

    `decompress` defaults to the key's `.gz` suffix; gzip is decoded on the fly
    so memory stays bounded whatever the object's size.
    """
    reader = io.BufferedReader(VerifyingReader(store.open(info.key), info), buffer_size=1 << 20)
    if decompress is None:
        decompress = info.key.endswith(".gz")
    if decompress:
        return gzip.GzipFile(fileobj=reader, mode="rb")  # type: ignore[return-value]
    return reader
