"""Errors an agent run can end with; each message is what status.json's `error` shows."""

from __future__ import annotations


class AgentError(Exception):
    """A run cannot go on; the message names the cause."""


class OperationFailed(AgentError):
    """One operation failed (bad data, refused request, broken download)."""


class Throttled(OperationFailed):
    """Something the agent called answered 429/503; `retry_after` is how long it asked us to wait."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
