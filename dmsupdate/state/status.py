"""status.json (DESIGN §5): the one definition of its fields, written by the agent, read by the control plane.

The agent keeps its status as a plain dict (`empty_status()` filled in as a run
goes) and writes it as JSON; the control plane reads a report with
`parse_status`, which checks every field and raises InvalidStatus naming the
first one that is wrong. Both halves use this module, so a field added here is
known to both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dmsupdate.state.fingerprint import InvalidFingerprint, parse_fingerprint
from dmsupdate.state.keys import EARLIEST, LATEST, EffectiveTime, InvalidKey
from dmsupdate.state.redact import redact, redact_value

# Field name -> the JSON type it holds (read by the API schema); the order is status.json's.
FIELD_TYPES: dict[str, str] = {
    "effectiveDate": "effective time or null",
    "recent": "list of keys",
    "lastSucceeded": "boolean or null",
    "lastUpdate": "ISO 8601 time or null",
    "applied": "number (or list of keys)",
    "failedKey": "key or null",
    "error": "text or null",
    "late": "list of keys",
    "invalid": "list of keys",
    "image": "key or null",
    "running": "boolean",
    "lastRun": "'update', 'rebuild' or null",
    "skipped": "list of {key, reason}",
    "fingerprint": "fingerprint object or null",
    "agentVersion": "text or null",
    "store": "{kind, quads, bytes} or null",
    "hookError": "text or null",
    "progress": "{done, total, bytes} or null",
}
RUN_KINDS = ("update", "rebuild")
# Times a report may carry are those of effective times (dmsupdate.state.keys: EARLIEST, LATEST);
# anything else is a broken or hostile report.
MAX_KEYS = 10_000  # list lengths kept from a report (late, invalid, recent, skipped)
MAX_TEXT = 100_000  # characters kept of `error` and `hookError`


def empty_status() -> dict[str, Any]:
    """The status of an agent that has never run (every field, in status.json's order)."""
    return {
        "effectiveDate": None,
        "recent": [],
        "lastSucceeded": None,
        "lastUpdate": None,
        "applied": 0,
        "failedKey": None,
        "error": None,
        "late": [],
        "invalid": [],
        "image": None,
        "running": False,
        "lastRun": None,
        "skipped": [],
        "fingerprint": None,
        "agentVersion": None,
        "store": None,
        "hookError": None,
        "progress": None,
    }


def now_iso() -> str:
    """Clock time in ISO 8601 (UTC, microseconds), as written in `lastUpdate`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class InvalidStatus(ValueError):
    """A status report that cannot be understood; the message names the field."""


@dataclass(frozen=True)
class Skipped:
    """A key of the last run that was not applied, and why (superseded, ...)."""

    key: str
    reason: str


@dataclass(frozen=True)
class AgentStatus:
    """A checked status.json: what the control plane records of a report."""

    effective: EffectiveTime | None = None
    recent: list[str] = field(default_factory=list)
    last_succeeded: bool | None = None
    last_update: datetime | None = None
    applied: int = 0
    failed_key: str = ""
    error: str = ""
    late: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    image: str = ""
    running: bool = False
    last_run: str | None = None
    skipped: list[Skipped] = field(default_factory=list)
    fingerprint: dict[str, Any] | None = None
    agent_version: str = ""
    store: dict[str, Any] | None = None
    hook_error: str = ""
    progress: dict[str, int] | None = None
    # The agent's readiness after the run (`ready`: {"ready", "reason"}); None when it did not say.
    ready: bool | None = None
    ready_reason: str = ""

    @property
    def effective_ns(self) -> int | None:
        return self.effective.nanos if self.effective is not None else None

    @property
    def rebuilt(self) -> bool:
        return self.last_run == "rebuild"


def parse_effective(value: Any) -> EffectiveTime | None:
    """`effectiveDate` in any accepted form (key path, flat, ISO 8601 UTC), or None when empty."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidStatus("effectiveDate must be a string")
    try:
        effective = EffectiveTime.parse_text(value)
    except InvalidKey as exc:
        raise InvalidStatus(f"effectiveDate: {exc}") from exc
    if not EARLIEST <= effective.to_datetime() < LATEST:
        raise InvalidStatus(f"effectiveDate {value!r} is outside 1970-2262")
    return effective


def _time(name: str, value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidStatus(f"{name} must be an ISO 8601 time")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidStatus(f"{name} must be an ISO 8601 time, not {value[:64]!r}") from exc
    if not EARLIEST <= when < LATEST:
        raise InvalidStatus(f"{name} {value!r} is outside 1970-2262")
    return when


def _text(name: str, value: Any, limit: int = MAX_TEXT) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidStatus(f"{name} must be a string or null")
    return value.replace("\x00", "")[:limit]


def _keys(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise InvalidStatus(f"{name} must be a list of keys")
    return [k.replace("\x00", "")[:1024] for k in value[:MAX_KEYS]]


def _flag(name: str, value: Any, nullable: bool = True) -> bool | None:
    if value is None and nullable:
        return None
    if not isinstance(value, bool):
        raise InvalidStatus(f"{name} must be true or false" + (" or null" if nullable else ""))
    return value


def _count(value: Any) -> int:
    if isinstance(value, list):
        return len(value)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise InvalidStatus("applied must be a number of operations or a list of keys")
    return value


def _numbers(name: str, value: Any, names: tuple[str, ...]) -> dict[str, Any] | None:
    """An object of small named counts (`progress`, `store`); other fields are kept as given."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidStatus(f"{name} must be an object or null")
    for part in names:
        n = value.get(part)
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < 2**63):
            raise InvalidStatus(f"{name}.{part} must be a whole number")
    return value


def _skipped(value: Any) -> list[Skipped]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidStatus("skipped must be a list of {key, reason}")
    entries = []
    for item in value[:MAX_KEYS]:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise InvalidStatus("skipped must be a list of {key, reason}")
        reason = item.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise InvalidStatus("skipped: each reason must be a string")
        entries.append(Skipped(item["key"][:1024], (reason or "")[:500]))
    return entries


def parse_status(body: Any) -> AgentStatus:
    """Check a status.json (a report's body) field by field; raise InvalidStatus on the first bad one.

    Unknown fields are ignored here (the control plane keeps the body as sent, through
    `stored_body`). `error` and `hookError` come back with any credential taken out.
    """
    if not isinstance(body, dict):
        raise InvalidStatus("a status report is a JSON object (status.json)")
    last_run = body.get("lastRun")
    if last_run is not None and last_run not in RUN_KINDS:
        raise InvalidStatus("lastRun must be 'update', 'rebuild' or null")
    try:
        fingerprint = parse_fingerprint(body.get("fingerprint"))
    except InvalidFingerprint as exc:
        raise InvalidStatus(str(exc)) from exc
    return AgentStatus(
        effective=parse_effective(body.get("effectiveDate")),
        recent=_keys("recent", body.get("recent")),
        last_succeeded=_flag("lastSucceeded", body.get("lastSucceeded")),
        last_update=_time("lastUpdate", body.get("lastUpdate")),
        applied=_count(body.get("applied")),
        failed_key=_text("failedKey", body.get("failedKey"), 1024),
        error=redact(_text("error", body.get("error"))),
        late=_keys("late", body.get("late")),
        invalid=_keys("invalid", body.get("invalid")),
        image=_text("image", body.get("image"), 1024),
        running=bool(_flag("running", body.get("running", False), nullable=False)),
        last_run=last_run,
        skipped=_skipped(body.get("skipped")),
        fingerprint=fingerprint,
        agent_version=_text("agentVersion", body.get("agentVersion"), 64),
        store=_numbers("store", body.get("store"), ("quads", "bytes")),
        hook_error=redact(_text("hookError", body.get("hookError"))),
        progress=_numbers("progress", body.get("progress"), ("done", "total", "bytes")),
        **_readiness(body.get("ready")),
    )


# The fields where an agent writes messages (keys and counts elsewhere).
TEXT_FIELDS = ("error", "hookError", "ready")


def stored_body(body: dict[str, Any]) -> dict[str, Any]:
    """A report's body as the control plane keeps and shows it: its messages with credentials taken out."""
    return {k: redact_value(v) if k in TEXT_FIELDS else v for k, v in body.items()}


def _readiness(value: Any) -> dict[str, Any]:
    """`ready` as sent by the agent: {"ready": bool, "reason": text|null}, or absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidStatus("ready must be an object {ready, reason} or null")
    return {
        "ready": _flag("ready.ready", value.get("ready")),
        "ready_reason": redact(_text("ready.reason", value.get("reason"))),
    }
