"""The state key layout (DESIGN §3): parse and format keys under a state root.

Reading is lenient (any percent-escape, 1 to 9 fraction digits, the flat image
form); writing is strict (labels checked, 9 fraction digits, nested form only).
This module is the single parser shared by the agent and the control plane.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import unquote

NANOS = 1_000_000_000

GRAPH_OPS = ("add", "replace", "drop")
SPARQL_OPS = ("update", "postproc")
UPDATE_OPS = GRAPH_OPS + SPARQL_OPS
IMAGE_OPS = ("image", "dump")
ALL_OPS = UPDATE_OPS + IMAGE_OPS

RDF_FORMATS = ("ttl", "nt", "nq", "rdf")
UPDATE_FORMATS = ("ru",)
FORMATS_BY_OP: dict[str, tuple[str, ...]] = {
    "add": RDF_FORMATS + tuple(f + ".gz" for f in RDF_FORMATS),
    "replace": RDF_FORMATS + tuple(f + ".gz" for f in RDF_FORMATS),
    "drop": ("",),
    "update": ("ru", "ru.gz"),
    "postproc": ("ru", "ru.gz"),
    "image": ("tgz",),
    "dump": ("nq.gz",),
}

# Registry backups live under the root too; they are not state keys (never replayed, synced or GC'd).
BACKUPS_PREFIX = "backups/"

LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_DATE = r"(?P<date>\d{4}-\d{2}-\d{2})"
_TIME = r"(?P<time>\d{2}-\d{2}-\d{2}-\d{1,9})"
# The argument is the shortest run before an optional `.format` (the first dot that starts a valid
# format ends it). It is matched a run of dot-free characters at a time, possessively: the same
# match as `[^/]*?` without trying every character as the end (parsing cost 3x less).
_NAME = r"(?P<label>[^_/]+)_(?P<op>[a-z]+)(?:_(?P<arg>(?:[^/.]++|\.)*?))?(?:\.(?P<format>[a-z]+(?:\.gz)?))?"
_UPDATE_RE = re.compile(rf"updates/{_DATE}/{_TIME}/{_NAME}")
_IMAGE_RE = re.compile(rf"images/{_DATE}/{_TIME}/{_NAME}")
_FLAT_IMAGE_RE = re.compile(rf"images/{_DATE}-{_TIME}_{_NAME}")
_EXTRA_RE = re.compile(r"images/(?:[^/]+\.opt|config\.ttl)")


class InvalidKey(ValueError):
    """Raised when a key or a key part does not follow the layout."""


@lru_cache(maxsize=4096)
def _day_seconds(date: str) -> int:
    """Seconds from the epoch to `YYYY-MM-DD` 00:00 UTC; raise ValueError for a bad date.

    Cached: a listing holds thousands of keys per day, and strptime was the
    largest cost of parsing a key (sync_state parses every key it registers).
    """
    return int(datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)  # naive: isoformat() without an offset
# Effective times are nanoseconds since 1970 in a signed 64-bit integer (the registry stores them
# so): from 1970-01-01 up to 2262-04-11. A time outside cannot be represented: such a key is invalid.
EARLIEST = _EPOCH
LATEST = datetime(2262, 4, 11, tzinfo=UTC)
LATEST_NANOS = int((LATEST - _EPOCH).total_seconds()) * NANOS
# Graph URIs and components repeat across a dataset's keys: unescaping one was a third of parsing a key.
_unquote_arg = lru_cache(maxsize=4096)(unquote)


def _parse_nanos(date: str, time: str) -> int:
    """Nanoseconds since the epoch of `YYYY-MM-DD` and `hh-mm-ss-F`; raise InvalidKey when malformed."""
    try:
        day_seconds = _day_seconds(date)
        hh, mm, ss, frac = time.split("-")
        if not (len(hh) == len(mm) == len(ss) == 2 and frac.isdigit() and 1 <= len(frac) <= 9):
            raise ValueError(time)
        h, m, s = int(hh), int(mm), int(ss)
        if h > 23 or m > 59 or s > 60:
            raise ValueError(time)
    except ValueError as exc:
        raise InvalidKey(f"bad date/time {date!r} {time!r}") from exc
    nanos = (day_seconds + h * 3600 + m * 60 + s) * NANOS + int(frac.ljust(9, "0"))
    if not 0 <= nanos < LATEST_NANOS:
        raise InvalidKey(
            f"{date} {time} is outside 1970-01-01 to 2262-04-11, the effective times that can be represented"
        )
    return nanos


def nanos_to_datetime(nanos: int) -> datetime:
    """The instant as an aware UTC datetime, truncated to microseconds."""
    return _EPOCH + timedelta(microseconds=nanos // 1000)


@dataclass(frozen=True)
class EffectiveTime:
    """A UTC instant with nanosecond precision, ordered numerically."""

    nanos: int

    @classmethod
    def parse(cls, date: str, time: str) -> EffectiveTime:
        """Parse `YYYY-MM-DD` and `hh-mm-ss-F` (F: 1 to 9 fraction digits)."""
        return cls(_parse_nanos(date, time))

    @classmethod
    def parse_text(cls, text: str) -> EffectiveTime:
        """Parse the forms used in status files and the API.

        Accepts `YYYY-MM-DD/hh-mm-ss-F`, `YYYY-MM-DD-hh-mm-ss-F` and ISO 8601
        (`2016-01-15T04:00:01.262711077Z`, fraction up to 9 digits).
        """
        text = text.strip()
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[/T-](\d{2}-\d{2}-\d{2}-\d{1,9})", text)
        if m:
            return cls.parse(m.group(1), m.group(2))
        m = re.fullmatch(
            r"(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]00:?00)?", text
        )
        if m:
            return cls.parse(m.group(1), f"{m.group(2)}-{m.group(3)}-{m.group(4)}-{m.group(5) or '0'}")
        raise InvalidKey(f"not an effective time: {text!r}")

    @classmethod
    def from_datetime(cls, value: datetime) -> EffectiveTime:
        """Convert an aware datetime (microsecond precision) to an effective time."""
        if value.tzinfo is None:
            raise ValueError("effective times need an aware datetime")
        delta = value - _EPOCH
        return cls((delta.days * 86400 + delta.seconds) * NANOS + delta.microseconds * 1000)

    @classmethod
    def now(cls) -> EffectiveTime:
        import time as _time

        return cls(_time.time_ns())

    @property
    def date(self) -> str:
        return self.to_datetime().strftime("%Y-%m-%d")

    @property
    def time(self) -> str:
        return self.to_datetime().strftime("%H-%M-%S-") + f"{self.nanos % NANOS:09d}"

    @property
    def path(self) -> str:
        """The `{date}/{time}` key segment, as written in keys and status.json."""
        return f"{self.date}/{self.time}"

    def to_datetime(self) -> datetime:
        """The instant as an aware datetime (truncated to microseconds)."""
        return nanos_to_datetime(self.nanos)

    def isoformat(self) -> str:
        """ISO 8601 with all nine fraction digits, e.g. `2016-01-15T04:00:01.262711077Z`."""
        seconds, fraction = divmod(self.nanos, NANOS)
        return f"{(_NAIVE_EPOCH + timedelta(seconds=seconds)).isoformat()}.{fraction:09d}Z"

    def __lt__(self, other: EffectiveTime) -> bool:
        return self.nanos < other.nanos

    def __le__(self, other: EffectiveTime) -> bool:
        return self.nanos <= other.nanos

    def __gt__(self, other: EffectiveTime) -> bool:
        return self.nanos > other.nanos

    def __ge__(self, other: EffectiveTime) -> bool:
        return self.nanos >= other.nanos

    def __str__(self) -> str:
        return self.path


@lru_cache(maxsize=4096)
def iso(nanos: int | None) -> str | None:
    """An effective time in ns as ISO 8601 with nanoseconds (`2016-01-15T04:00:01.262711077Z`), or None.

    Cached: a fleet's servers mostly share a handful of effective times."""
    return EffectiveTime(nanos).isoformat() if nanos is not None else None


@dataclass(frozen=True)
class StateKey:
    """A parsed key: what it is, when it takes effect, and what it does."""

    key: str
    kind: str  # "update" | "image" | "extra"
    op: str | None = None
    label: str | None = None
    effective: EffectiveTime | None = None
    arg: str | None = None
    format: str | None = None

    @property
    def graph(self) -> str | None:
        return self.arg if self.op in GRAPH_OPS else None

    @property
    def component(self) -> str | None:
        return self.arg if self.op == "postproc" else None

    @property
    def gzipped(self) -> bool:
        fmt = self.format or ""
        return fmt.endswith(".gz") or fmt == "tgz"

    @property
    def rdf_format(self) -> str | None:
        """The syntax without compression: `ttl`, `nt`, `nq`, `rdf`, `ru`."""
        if not self.format:
            return None
        return self.format.removesuffix(".gz")

    @property
    def sort_key(self) -> tuple[int, str]:
        """Replay order: effective time, then key (DESIGN §4)."""
        return (self.effective.nanos if self.effective else -1, self.key)


def escape_arg(value: str) -> str:
    """Percent-escape a graph URI or component for a key: `%`, `/` and `.`."""
    return value.replace("%", "%25").replace("/", "%2F").replace(".", "%2E")


def check_label(label: str) -> str:
    """Return the label when it may be written, else raise InvalidKey."""
    if not isinstance(label, str) or not LABEL_RE.fullmatch(label):
        raise InvalidKey(f"label {label!r} must match [A-Za-z0-9][A-Za-z0-9-]{{0,63}} (no '_' or '/')")
    return label


class KeyParts(NamedTuple):
    """What a key says, as plain values (what `parse_key` wraps into a StateKey)."""

    kind: str
    op: str | None = None
    label: str | None = None
    nanos: int | None = None
    arg: str | None = None
    format: str | None = None


def parse_key(key: str) -> StateKey:
    """Parse a key relative to the state root; raise InvalidKey if it fits no form."""
    kind, op, label, nanos, arg, fmt = parse_key_parts(key)
    effective = EffectiveTime(nanos) if nanos is not None else None
    return StateKey(key=key, kind=kind, op=op, label=label, effective=effective, arg=arg, format=fmt)


def parse_key_parts(key: str) -> KeyParts:
    """Parse a key into its parts without building objects (sync_state parses every key it registers).

    Raise InvalidKey if it fits no form.
    """
    m = _UPDATE_RE.fullmatch(key)  # most keys: tried first
    if m:
        return _from_match(key, "update", m)
    # Before the image forms: `images/DATE-TIME_x_y.opt` is a component file, not a flat image.
    if _EXTRA_RE.fullmatch(key):
        return KeyParts("extra")
    for pattern in (_IMAGE_RE, _FLAT_IMAGE_RE):
        m = pattern.fullmatch(key)
        if m:
            return _from_match(key, "image", m)
    raise InvalidKey(f"key does not follow the state layout: {key!r}")


def _from_match(key: str, kind: str, m: re.Match[str]) -> KeyParts:
    label, op, arg_raw, fmt, date, time = m.group("label", "op", "arg", "format", "date", "time")
    fmt = fmt or ""
    allowed_ops = UPDATE_OPS if kind == "update" else IMAGE_OPS
    if op not in allowed_ops:
        raise InvalidKey(f"unknown op {op!r} in {key!r}")
    if fmt not in FORMATS_BY_OP[op]:
        raise InvalidKey(f"format {fmt or '(none)'!r} is not allowed for {op} in {key!r}")
    needs_arg = op in GRAPH_OPS or op == "postproc"
    if needs_arg and not arg_raw:
        raise InvalidKey(f"{op} needs a graph or component in {key!r}")
    if not needs_arg and arg_raw is not None:
        raise InvalidKey(f"{op} takes no argument in {key!r}")
    arg = _unquote_arg(arg_raw) if arg_raw else None
    return KeyParts(kind, op, label, _parse_nanos(date, time), arg, fmt or None)


def make_key(
    effective: EffectiveTime,
    label: str,
    op: str,
    arg: str | None = None,
    format: str | None = None,
) -> StateKey:
    """A new key in the written form with what it says (no parsing back); InvalidKey for anything off-layout."""
    key = format_key(effective, label, op, arg, format)
    kind = "image" if op in IMAGE_OPS else "update"
    fmt = _written_format(op, format)
    return StateKey(key=key, kind=kind, op=op, label=label, effective=effective, arg=arg, format=fmt or None)


def _written_format(op: str, format: str | None) -> str:
    """The format a written key carries: as given, images and dumps in their one format by default."""
    if op == "image":
        return format or "tgz"
    if op == "dump":
        return format or "nq.gz"
    return format or ""


def format_key(
    effective: EffectiveTime,
    label: str,
    op: str,
    arg: str | None = None,
    format: str | None = None,
) -> str:
    """Build a key in the written form; raise InvalidKey for anything off-layout."""
    check_label(label)
    if not 0 <= effective.nanos < LATEST_NANOS:
        raise InvalidKey(f"effective time {effective.nanos} ns is outside 1970-01-01 to 2262-04-11")
    if op not in ALL_OPS:
        raise InvalidKey(f"unknown op {op!r}; expected one of {', '.join(ALL_OPS)}")
    fmt = _written_format(op, format)
    if fmt not in FORMATS_BY_OP[op]:
        allowed = ", ".join(f for f in FORMATS_BY_OP[op] if f) or "none"
        raise InvalidKey(f"format {fmt or '(none)'!r} is not allowed for {op} (allowed: {allowed})")
    needs_arg = op in GRAPH_OPS or op == "postproc"
    if needs_arg and not arg:
        what = "graph URI" if op in GRAPH_OPS else "component name"
        raise InvalidKey(f"{op} needs a {what}")
    if not needs_arg and arg:
        raise InvalidKey(f"{op} takes no graph or component")
    folder = "images" if op in IMAGE_OPS else "updates"
    name = f"{label}_{op}" + (f"_{escape_arg(arg)}" if arg else "") + (f".{fmt}" if fmt else "")
    return f"{folder}/{effective.path}/{name}"


def window_start_key(folder: str, effective: EffectiveTime) -> str:
    """The StartAfter key listing `folder` from `effective` on (inclusive of that time)."""
    # Within one second, fraction digits sort as their numbers do, so a key
    # ending at the second's `-` sorts before every key of that second.
    return f"{folder}/{effective.date}/{effective.to_datetime():%H-%M-%S}-"
