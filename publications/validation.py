"""Checks a publication before anything is written: layout, size, gzip and RDF/SPARQL syntax.

Bodies are spooled to a temporary file once (hashing as they go) and then
parsed as a stream, so memory stays bounded whatever the upload's size.
Every refusal is a domain error: Invalid, or TooLarge past a size limit.
"""

from __future__ import annotations

import atexit
import gzip
import hashlib
import io
import re
import shutil
import tempfile
import threading
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, BinaryIO

from django.conf import settings

from dmsupdate.errors import Invalid, StoreFailed, TooLarge, Unavailable
from dmsupdate.state.content import (
    UnsafeContent,
    XmlDeclarationScreen,
    check_graph_iri,
    check_sparql_update,
)
from dmsupdate.state.keys import (
    FORMATS_BY_OP,
    GRAPH_OPS,
    UPDATE_OPS,
    EffectiveTime,
    InvalidKey,
    StateKey,
    format_key,
)
from dmsupdate.state.stores import ObjectStore, StoreError, StoreUnavailable

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"

# Media types of the syntaxes a raw body may be sent as (Content-Type → format).
FORMAT_BY_MEDIA_TYPE = {
    "text/turtle": "ttl",
    "application/x-turtle": "ttl",
    "application/n-triples": "nt",
    "text/plain": "nt",
    "application/n-quads": "nq",
    "text/x-nquads": "nq",
    "application/rdf+xml": "rdf",
    "application/sparql-update": "ru",
}
EXTENSIONS = ("ttl", "nt", "nq", "rdf", "ru")


@dataclass
class Upload:
    """A request body spooled to a temporary file, with the digests computed on the way."""

    file: IO[bytes]
    size: int
    sha256: str
    md5: str
    filename: str = ""

    @property
    def gzipped(self) -> bool:
        self.file.seek(0)
        magic = self.file.read(2)
        self.file.seek(0)
        return magic == GZIP_MAGIC

    def close(self) -> None:
        self.file.close()


def too_large(limit: int) -> TooLarge:
    return TooLarge("too_large", f"the body exceeds the upload limit of {limit} bytes")


def spool(stream: BinaryIO | None, filename: str = "", limit: int | None = None) -> Upload:
    """Copy a body to a temporary file, refusing (413) past `limit` bytes, hashing as it goes."""
    limit = settings.DMSUPDATE["MAX_UPLOAD_BYTES"] if limit is None else limit
    out = tempfile.SpooledTemporaryFile(max_size=8 * CHUNK)
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    while stream is not None:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            out.close()
            raise too_large(limit)
        sha.update(chunk)
        md5.update(chunk)
        out.write(chunk)
    out.seek(0)
    return Upload(out, size, sha.hexdigest(), md5.hexdigest(), filename)


def check_layout(label: str, op: str, arg: str | None, fmt: str | None) -> None:
    """Refuse a label, op, graph/component or format the key layout does not allow (fmt None: not known yet)."""
    if op not in UPDATE_OPS:
        raise Invalid("invalid_op", f"unknown op {op!r}; expected one of {', '.join(UPDATE_OPS)}")
    if fmt is None:
        fmt = FORMATS_BY_OP[op][0]
    try:
        format_key(EffectiveTime(0), label, op, arg or None, fmt or None)
    except InvalidKey as exc:
        code = "invalid_label" if "label" in str(exc) else "invalid_key"
        raise Invalid(code, str(exc)) from exc
    if op in GRAPH_OPS and arg:
        try:
            check_graph_iri(arg)
        except UnsafeContent as exc:
            raise Invalid(exc.code, str(exc)) from exc


def infer_format(op: str, given: str, filename: str, content_type: str, gzipped: bool) -> str:
    """The object's format: as given, else from the file name, else from the media type.

    A gzip body whose format was not said to be gzip gets `.gz` added; the
    key's extension must tell the agent to decompress.
    """
    if op == "drop":
        return given
    fmt = given.strip().lower().lstrip(".")
    if not fmt and filename:
        name = filename.lower()
        for ext in EXTENSIONS:
            if name.endswith(f".{ext}.gz") or name.endswith(f".{ext}"):
                fmt = ext + (".gz" if name.endswith(".gz") else "")
                break
    if not fmt:
        media = content_type.split(";")[0].strip().lower()
        fmt = FORMAT_BY_MEDIA_TYPE.get(media, "")
    if not fmt and op in ("update", "postproc"):
        fmt = "ru"
    if not fmt:
        allowed = ", ".join(f for f in FORMATS_BY_OP[op] if f)
        raise Invalid(
            "unknown_format",
            f"cannot tell the format: pass format ({allowed}), a file name with its extension, "
            "or a Content-Type such as text/turtle",
        )
    if gzipped and not fmt.endswith(".gz"):
        fmt += ".gz"
    return fmt


class DecompressedTooLarge(Exception):
    """Raised while reading a body past its content limit (decompressed gzip, or a SPARQL update)."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(what)
        self.limit = limit
        self.what = what


class _Limited(io.RawIOBase):
    """A reader that raises DecompressedTooLarge once more than `limit` bytes came through."""

    def __init__(
        self, raw: IO[bytes], limit: int, what: str, screen: XmlDeclarationScreen | None = None
    ) -> None:
        self._raw = raw
        self._limit = limit
        self._what = what
        self._screen = screen
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        chunk = self._raw.read(min(len(buffer), CHUNK))
        self.count += len(chunk)
        if self.count > self._limit:
            raise DecompressedTooLarge(self._limit, self._what)
        if self._screen is not None:
            self._screen.feed(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _content(upload: Upload, fmt: str) -> IO[bytes]:
    """The upload's content as a stream: decompressed for `.gz` formats, size-limited while it is read.

    SPARQL updates have their own, much lower limit; RDF/XML is screened for
    declarations as it streams, before the parser sees them.
    """
    upload.file.seek(0)
    base = fmt.removesuffix(".gz")
    if base == "ru":
        limit, what = settings.DMSUPDATE["MAX_UPDATE_BYTES"], "the SPARQL update"
    else:
        limit, what = settings.DMSUPDATE["MAX_DECOMPRESSED_BYTES"], "the gzip content"
    raw: IO[bytes] = upload.file
    if fmt.endswith(".gz"):
        if not upload.gzipped:
            raise Invalid("invalid_gzip", f"format {fmt} says gzip, but the body is not gzip data")
        raw = gzip.GzipFile(fileobj=upload.file, mode="rb")
    elif base not in ("ru", "rdf"):
        return raw  # the upload limit already bounds it
    screen = XmlDeclarationScreen() if base == "rdf" else None
    return io.BufferedReader(_Limited(raw, limit, what, screen), buffer_size=CHUNK)


def _gzip_refusal(exc: Exception) -> Invalid | TooLarge:
    if isinstance(exc, DecompressedTooLarge):
        if exc.what == "the gzip content":
            return TooLarge("too_large", f"the gzip content expands beyond {exc.limit} bytes; refused")
        return TooLarge("too_large", f"{exc.what} is larger than {exc.limit} bytes; refused")
    return Invalid("invalid_gzip", f"the gzip data is damaged: {exc}")


_GZIP_ERRORS = (DecompressedTooLarge, gzip.BadGzipFile, EOFError, zlib.error)
# Raised by our own readers while the parser pulls the body: passed on as they are.
_OWN_ERRORS = (*_GZIP_ERRORS, UnsafeContent, Invalid)


def validate_content(upload: Upload | None, op: str, fmt: str, allow_drop_all: bool = True) -> int:
    """Parse the body as its format says; return the triple/quad count (0 for SPARQL and drop).

    Refusals: a body on `drop`, a missing body elsewhere, damaged gzip, a gzip
    bomb or an oversized SPARQL update (413), malformed RDF or SPARQL Update
    (400 with the parser's position), and content the data servers must not
    run (dmsupdate.state.content: LOAD/SERVICE, DROP ALL unless allowed, DTDs).
    """
    size = upload.size if upload is not None else 0
    if op == "drop":
        if size:
            raise Invalid("unexpected_body", "drop takes no body")
        return 0
    if upload is None or size == 0:
        raise Invalid("missing_body", f"{op} needs a body: a multipart `file` or the raw request body")
    base = fmt.removesuffix(".gz")
    try:
        stream = _content(upload, fmt)
        if base == "ru":
            _check_sparql_update(stream, allow_drop_all)
            return 0
        return _check_rdf(stream, base)
    except UnsafeContent as exc:
        raise Invalid(exc.code, str(exc)) from exc
    except _GZIP_ERRORS as exc:
        raise _gzip_refusal(exc) from exc
    finally:
        upload.file.seek(0)


def _rdf_format(base: str):
    import pyoxigraph

    return {
        "ttl": pyoxigraph.RdfFormat.TURTLE,
        "nt": pyoxigraph.RdfFormat.N_TRIPLES,
        "nq": pyoxigraph.RdfFormat.N_QUADS,
        "rdf": pyoxigraph.RdfFormat.RDF_XML,
    }[base]


def _check_rdf(stream: IO[bytes], base: str) -> int:
    """Stream-parse RDF with pyoxigraph; 400 with the parser's line and column on the first error."""
    import pyoxigraph

    count = 0
    try:
        for _ in pyoxigraph.parse(stream, _rdf_format(base)):
            count += 1
    except SyntaxError as exc:
        raise Invalid("invalid_rdf", f"malformed {base} data: {exc.msg}") from exc
    except UnicodeDecodeError as exc:
        raise Invalid("invalid_rdf", f"malformed {base} data: not UTF-8 ({exc.reason})") from exc
    except _OWN_ERRORS:
        raise
    except Exception as exc:  # any other parser failure (a resource limit, an I/O error) is the body's
        raise Invalid("invalid_rdf", f"{base} data refused by the parser: {exc}") from exc
    return count


_PARSE_ONLY_LOCK = threading.Lock()
_parse_only_store = None
_READ_ONLY = "read-write"
_SPARQL_POSITION = re.compile(r"error at (\d+):(\d+): (.*)", re.S)


def _sparql_parser():
    """A read-only, empty Oxigraph store: `update()` on it parses but can never execute.

    Executing would be unsafe (LOAD and SERVICE fetch URLs) and costly; the
    read-only store refuses to start the transaction after parsing succeeds.
    """
    global _parse_only_store
    with _PARSE_ONLY_LOCK:
        if _parse_only_store is None:
            import pyoxigraph

            folder = tempfile.mkdtemp(prefix="dmsupdate-sparql-parse-")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            writable = pyoxigraph.Store(folder)
            del writable  # release the write lock before opening read-only
            _parse_only_store = pyoxigraph.Store.read_only(folder)
        return _parse_only_store


def _check_sparql_update(stream: IO[bytes], allow_drop_all: bool) -> None:
    """Check what the update may do, then parse it; 400 with line and column when it is malformed.

    The lexical rules (dmsupdate.state.content) run first: they also keep
    input that would overflow the parser's stack away from it.
    """
    raw = stream.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid("invalid_sparql", f"the SPARQL Update is not UTF-8 ({exc.reason})") from exc
    check_sparql_update(text, allow_drop_all=allow_drop_all)
    try:
        _sparql_parser().update(text)
    except SyntaxError as exc:
        message = str(exc.msg if exc.msg else exc)
        m = _SPARQL_POSITION.fullmatch(message)
        if m:
            message = f"line {m.group(1)}, column {m.group(2)}: {m.group(3)}"
        raise Invalid("invalid_sparql", f"malformed SPARQL Update: {message}") from exc
    except RuntimeError as exc:
        if _READ_ONLY not in str(exc):
            raise Invalid("invalid_sparql", f"SPARQL Update refused: {exc}") from exc
    except Exception as exc:  # any other parser failure (a resource limit, an I/O error) is the body's
        raise Invalid("invalid_sparql", f"SPARQL Update refused: {exc}") from exc


# DESIGN §6: how far ahead of the control plane's clock an effective time may be.
MAX_AHEAD = timedelta(minutes=5)
# Formats whose content is read and checked when recorded: what could make data servers fetch
# URLs or expand entities. Other RDF is left to the agents (reading it all here costs too much).
SCREENED_FORMATS = ("ru", "rdf")


def check_recorded_key(parsed: StateKey) -> None:
    """Refuse a recorded key dated more than 5 minutes ahead (it would wedge every agent's window) or naming a bad graph."""
    ahead = (parsed.effective.to_datetime() - datetime.now(UTC)) if parsed.effective else timedelta(0)
    if ahead > MAX_AHEAD:
        raise Invalid(
            "future_time",
            f"{parsed.key} takes effect {ahead} from now; effective times may be at most "
            f"{int(MAX_AHEAD.total_seconds() // 60)} minutes ahead of the control plane's clock",
        )
    if parsed.op in GRAPH_OPS:
        try:
            check_graph_iri(parsed.arg or "")
        except UnsafeContent as exc:
            raise Invalid(exc.code, str(exc)) from exc


def check_recorded_content(parsed: StateKey, store: ObjectStore, allow_drop_all: bool) -> None:
    """Read and check a recorded SPARQL update or RDF/XML object as an uploaded one would be."""
    if parsed.op not in UPDATE_OPS or parsed.rdf_format not in SCREENED_FORMATS:
        return
    try:
        with store.open(parsed.key) as body:
            upload = spool(body)
    except StoreUnavailable as exc:
        raise Unavailable("store_unavailable", f"the state root is unavailable, retry later: {exc}") from exc
    except StoreError as exc:
        raise StoreFailed("store_error", str(exc)) from exc
    try:
        validate_content(upload, parsed.op, parsed.format or "", allow_drop_all=allow_drop_all)
    finally:
        upload.close()
