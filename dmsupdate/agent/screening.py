"""What the agent refuses to run, whichever backend: the rules of dmsupdate.state.content, applied again.

The control plane refuses such content at publication, but an object can
reach the bucket without it (written straight into S3, or changed after it was
recorded). The key then fails with a clear error and nothing is sent or run:
no URL is fetched, no entity expanded, no stack overflowed.
"""

from __future__ import annotations

from typing import BinaryIO, cast

from dmsupdate.agent.errors import OperationFailed
from dmsupdate.state.content import (
    AGENT_MAX_UPDATE_BYTES,
    UnsafeContent,
    XmlDeclarationScreen,
    check_sparql_update,
)
from dmsupdate.state.stores import ObjectInfo, ObjectStore, StoreError, open_verified


def read_update(source: ObjectStore, info: ObjectInfo | None, limit: int = AGENT_MAX_UPDATE_BYTES) -> str:
    """The text of a SPARQL update object, read (at most `limit` bytes, decompressed) and screened.

    Used by both backends in place of a plain read: OperationFailed names the
    key and the rule it breaks.
    """
    if info is None:
        raise OperationFailed("no object information for this key")
    try:
        with open_verified(source, info) as stream:
            body = stream.read(limit + 1)
    except (OSError, EOFError, StoreError) as exc:
        raise OperationFailed(f"cannot read {info.key}: {exc}") from exc
    if len(body) > limit:
        raise OperationFailed(f"{info.key}: the SPARQL update is larger than {limit} bytes; refused")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OperationFailed(f"{info.key}: the SPARQL update is not UTF-8 text: {exc}") from exc
    try:
        check_sparql_update(text)
    except UnsafeContent as exc:
        raise OperationFailed(f"{info.key}: {exc}") from exc
    return text


def screen_rdfxml(body: bytes, key: str) -> None:
    """Refuse an RDF/XML body holding a DTD or entity declarations (OperationFailed naming the key)."""
    try:
        XmlDeclarationScreen().feed(body)
    except UnsafeContent as exc:
        raise OperationFailed(f"{key}: {exc}") from exc


def screened(stream: BinaryIO, key: str, media_type: str) -> BinaryIO:
    """The stream an endpoint is sent: RDF/XML screened chunk by chunk, anything else as it is."""
    if media_type != "application/rdf+xml":
        return stream
    return cast(BinaryIO, ScreenedStream(stream, key))


class ScreenedStream:
    """An RDF/XML stream sent to an endpoint: each chunk is screened before it is handed on.

    A declaration stops the upload before its bytes leave the agent (the
    endpoint sees a cut request and stores nothing).
    """

    def __init__(self, stream: BinaryIO, key: str) -> None:
        self._stream = stream
        self._key = key
        self._screen = XmlDeclarationScreen()

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        try:
            self._screen.feed(chunk)
        except UnsafeContent as exc:
            raise OperationFailed(f"{self._key}: {exc}") from exc
        return chunk
