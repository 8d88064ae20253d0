"""A state root in S3 or an S3-compatible store: the one module that uses boto3."""

from __future__ import annotations

import base64
import builtins
import io
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from dmsupdate.state.stores import (
    DELETE_BATCH,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    StoreError,
    StoreStats,
    StoreUnavailable,
)

_RETRIES = Config(
    retries={"max_attempts": 5, "mode": "standard"},
    connect_timeout=10,
    read_timeout=60,
    s3={"addressing_style": "path"},
)
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_TAKEN = {"412", "PreconditionFailed", "ConditionalRequestConflict", "409"}


class S3Store:
    """Objects under `s3://bucket/prefix`; any S3-compatible endpoint."""

    def __init__(self, bucket: str, prefix: str = "", endpoint: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.root = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.endpoint = endpoint
        self.stats = StoreStats(scheme="s3")
        self.client = boto3.session.Session().client("s3", endpoint_url=endpoint or None, config=_RETRIES)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _fail(self, action: str, key: str, exc: Exception) -> StoreError:
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _NOT_FOUND or status == 404:
                if code == "NoSuchBucket":
                    return StoreError(f"bucket {self.bucket!r} does not exist ({self.endpoint or 'AWS'})")
                return ObjectNotFound(f"no object {key!r} under {self.root}")
            if code == "NoSuchBucket":
                return StoreError(f"bucket {self.bucket!r} does not exist ({self.endpoint or 'AWS'})")
            if status >= 500 or code in {"SlowDown", "ServiceUnavailable", "RequestTimeout"}:
                return StoreUnavailable(f"S3 {action} {key!r} failed: {code or status}")
            return StoreError(
                f"S3 {action} {key!r} failed: {code} {exc.response.get('Error', {}).get('Message', '')}".strip()
            )
        return StoreUnavailable(f"S3 {action} {key!r} failed: {exc}")

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        args = {"Bucket": self.bucket, "Prefix": self.prefix + prefix, "MaxKeys": 1000}
        if start_after:
            args["StartAfter"] = self.prefix + start_after
        cut = len(self.prefix)
        while True:
            self.stats.count("list")
            try:
                page = self.client.list_objects_v2(**args)
            except (ClientError, BotoCoreError) as exc:
                raise self._fail("list", prefix, exc) from exc
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=item["Key"][cut:],
                    size=item["Size"],
                    etag=item.get("ETag", "").strip('"') or None,
                    last_modified=item.get("LastModified"),
                )
            if not page.get("IsTruncated"):
                return
            args["ContinuationToken"] = page["NextContinuationToken"]
            args.pop("StartAfter", None)

    def head(self, key: str) -> ObjectInfo:
        self.stats.count("head")
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("head", key, exc) from exc
        return ObjectInfo(
            key=key,
            size=r["ContentLength"],
            etag=r.get("ETag", "").strip('"') or None,
            last_modified=r.get("LastModified"),
        )

    def open(self, key: str) -> BinaryIO:
        self.stats.count("get")
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("get", key, exc) from exc
        return io.BufferedReader(_Body(r["Body"], key), buffer_size=1 << 20)  # type: ignore[return-value]

    def put_new(self, key: str, body: BinaryIO, size: int, md5: str | None = None) -> ObjectInfo:
        self.stats.count("put")
        args = {
            "Bucket": self.bucket,
            "Key": self.prefix + key,
            "Body": body,
            "ContentLength": size,
            "IfNoneMatch": "*",
        }
        if md5:
            args["ContentMD5"] = base64.b64encode(bytes.fromhex(md5)).decode()
        try:
            r = self.client.put_object(**args)
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError):
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
                if code in _TAKEN or status in {"412", "409"}:
                    raise ObjectExists(f"{key!r} already exists under {self.root}") from exc
            raise self._fail("put", key, exc) from exc
        return ObjectInfo(key=key, size=size, etag=r.get("ETag", "").strip('"') or None)

    def put(self, key: str, body: BinaryIO, size: int) -> ObjectInfo:
        self.stats.count("put")
        try:
            r = self.client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=body, ContentLength=size
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("put", key, exc) from exc
        return ObjectInfo(key=key, size=size, etag=r.get("ETag", "").strip('"') or None)

    def delete_many(self, keys: Iterable[str]) -> builtins.list[str]:
        failed: builtins.list[str] = []
        batch: builtins.list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                failed += self._delete_batch(batch)
                batch = []
        if batch:
            failed += self._delete_batch(batch)
        return failed

    def _delete_batch(self, keys: builtins.list[str]) -> builtins.list[str]:
        self.stats.count("delete")
        objects = [{"Key": self.prefix + k} for k in keys]
        try:
            r = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("delete", keys[0], exc) from exc
        cut = len(self.prefix)
        return [e["Key"][cut:] for e in r.get("Errors", [])]


class _Body(io.RawIOBase):
    """A streaming GET body whose network errors surface as StoreUnavailable."""

    def __init__(self, body: object, key: str) -> None:
        self._body = body
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            chunk = self._body.read(len(buffer))  # type: ignore[attr-defined]
        except (BotoCoreError, OSError) as exc:
            raise StoreUnavailable(f"download of {self._key!r} broke off: {exc}") from exc
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        try:
            self._body.close()  # type: ignore[attr-defined]
        finally:
            super().close()
