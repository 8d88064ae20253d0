"""Helpers of the dashboard's HTML views every app may use: filters and paging."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from django.http import QueryDict

PAGE_SIZE = 50


def parse_day(value: str) -> date | None:
    """A `YYYY-MM-DD` filter value, or None when absent or not a usable date (the filter is then ignored)."""
    try:
        day = date.fromisoformat(value) if value else None
    except ValueError:
        return None
    return day if day is not None and date.min < day < date.max else None


def text_param(params: QueryDict, name: str, limit: int) -> str:
    """A free-text filter value, trimmed, without NUL characters (PostgreSQL refuses them in text)."""
    return params.get(name, "").replace("\x00", "").strip()[:limit]


def int_param(value: str | None) -> int | None:
    """An id from a form or query string, or None when it is not one (never a 500 on bad input)."""
    return int(value) if value and re.fullmatch(r"[0-9]{1,18}", value) else None


def day_range(params: QueryDict, field: str) -> tuple[dict, dict]:
    """`since`/`until` (YYYY-MM-DD, inclusive, UTC) as ORM filters on `field`, and their clean values."""
    since, until = parse_day(params.get("since", "")), parse_day(params.get("until", ""))
    lookups: dict = {}
    if since:
        lookups[f"{field}__gte"] = datetime.combine(since, time.min, tzinfo=UTC)
    if until:
        lookups[f"{field}__lt"] = datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC)
    return lookups, {"since": since.isoformat() if since else "", "until": until.isoformat() if until else ""}


def keyset_page(rows, params: QueryDict, field: str = "id") -> tuple[list, str]:
    """Keyset pagination by a unique field, descending: a page of rows and the query string of the next page.

    No COUNT and no OFFSET: each page costs the same on a million rows. The
    `before` parameter holds the last value shown (an id, or a key with field="key").
    """
    raw = params.get("before")
    before: int | str | None = int_param(raw) if field == "id" else (raw or "").replace("\x00", "") or None
    if before is not None:
        rows = rows.filter(**{f"{field}__lt": before})
    chunk = list(rows.order_by(f"-{field}")[: PAGE_SIZE + 1])
    if len(chunk) <= PAGE_SIZE:
        return chunk, ""
    chunk = chunk[:PAGE_SIZE]
    following = params.copy()
    following["before"] = str(getattr(chunk[-1], field))
    return chunk, following.urlencode()
