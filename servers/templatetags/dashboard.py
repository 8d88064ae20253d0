"""Template tags of the dashboard: the one way to show a state, a time, a lag and its history."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from dmsupdate.state.keys import EffectiveTime
from servers.dashboard import PENDING_CAP

register = template.Library()

# The standard library's escape: the same five characters as Django's, without the
# lazy-string wrapper, which showed in the fleet page's profile at a thousand rows.
_esc = html.escape

# Every state the dashboard shows (server states, job statuses, object states, run
# results) maps to one of a few tones, so the colour of a word means the same everywhere.
TONES = {
    "ok": "good",
    "succeeded": "good",
    "published": "good",
    "behind": "warn",
    "queued": "info",
    "running": "info",
    "rebuilding": "info",
    "unpublished": "info",
    "failing": "bad",
    "failed": "bad",
    "invalid": "bad",
    "missing": "bad",
    "late": "bad",
    "unreachable": "bad",
    "timeout": "bad",
    "busy": "warn",
    "disabled": "mute",
    "expired": "mute",
    "deleted": "mute",
}


@register.simple_tag
def badge(state: str | None) -> SafeString:
    """A state as a coloured pill (`{% badge server.state %}`); the single rendering of any state."""
    text = str(state or "unknown")
    return mark_safe(f'<span class="badge badge-{TONES.get(text, "mute")}">{_esc(text)}</span>')


def _ago(seconds: float) -> str:
    if seconds < 45:
        return "just now"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min ago"
    hours = round(seconds / 3600)
    if hours < 48:
        return f"{hours} h ago"
    return f"{round(seconds / 86400)} days ago"


@register.simple_tag
def reltime(when: datetime | None, empty: str = "never", now: datetime | None = None) -> SafeString:
    """How long ago ("3 min ago"), with the exact UTC time in the `title` (shown on hover)."""
    if when is None:
        return mark_safe(f'<span class="muted">{_esc(empty)}</span>')
    seconds = ((now or timezone.now()) - when).total_seconds()
    text = _ago(seconds) if seconds >= 0 else "in the future"
    exact = when.astimezone(UTC).isoformat(timespec="seconds")
    return mark_safe(f'<time datetime="{exact}" title="{exact}">{text}</time>')


def duration_text(seconds: float | None) -> str:
    """A duration the way admins say it: "45 s", "12 min", "3 h 5 min", "2 days"."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    if seconds < 86400:
        hours, rest = divmod(int(seconds), 3600)
        minutes = rest // 60
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days = seconds / 86400
    if days >= 2:
        return f"{days:.0f} days"
    shown = f"{days:.1f}".removesuffix(".0")
    return "1 day" if shown == "1" else f"{shown} days"


@register.filter
def duration(seconds: float | None) -> str:
    """`{{ run.duration_seconds|duration }}`: "45 s", "12 min"."""
    return duration_text(seconds)


@register.filter
def pending(count: int | None) -> str:
    """A pending-updates count; beyond the fleet page's cap it reads "1,000+"."""
    count = count or 0
    return f"{PENDING_CAP:,}+" if count > PENDING_CAP else f"{count:,}"


def lag_text(count: int | None, lag_seconds: float | None) -> str:
    """A lag the way an admin reads it: "4 updates, 12 min behind", "up to date", "never reported"."""
    if lag_seconds is None:
        return f"never reported, {pending(count)} updates to replay"
    if not count:
        return "up to date"
    updates = "1 update" if count == 1 else f"{pending(count)} updates"
    return f"{updates}, {duration_text(lag_seconds)} behind"


@register.simple_tag
def lag(pending: int | None, lag_seconds: float | None) -> str:
    """`{% lag server.pending_updates server.lag_seconds %}`."""
    return lag_text(pending, lag_seconds)


SPARK_WIDTH = 120
SPARK_HEIGHT = 24


def sparkline_svg(points: Sequence[float | None], label: str = "lag over the last 24 h") -> SafeString:
    """An inline SVG polyline of lag values (oldest first, None = no report yet), scaled to its maximum.

    Built as one string rather than a template so the fleet page stays fast with
    thousands of rows; only numbers and an escaped title are inserted.
    """
    known = [(i, v) for i, v in enumerate(points) if v is not None]
    if not known:
        return format_html('<span class="spark-empty" title="{}">no reports in 24 h</span>', label)
    top = max(v for _, v in known)
    w, h = SPARK_WIDTH, SPARK_HEIGHT
    step = w / (len(points) - 1) if len(points) > 1 else 0.0
    coords = []
    for i, value in known:
        y = h - 2 - ((value / top) * (h - 4) if top > 0 else 0)
        coords.append(f"{i * step:.0f},{y:.1f}")
    if len(coords) == 1:
        # A single hour draws as a level stroke one hour wide, ending at its hour.
        x, y = (float(c) for c in coords[0].split(","))
        width = max(step, 8.0)
        coords = [f"{max(0.0, x - width):.0f},{y:.1f}", f"{max(x, width):.0f},{y:.1f}"]
    tone = "flat" if top == 0 else "up"
    title = escape(f"{label}: at most {duration_text(top) or '0 s'} behind")
    return mark_safe(
        f'<svg class="spark spark-{tone}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">'
        f"<title>{title}</title>"
        f'<polyline fill="none" points="{" ".join(coords)}"/></svg>'
    )


@register.simple_tag
def sparkline(points: Sequence[float] | None) -> SafeString:
    """`{% sparkline row.spark %}`: the 24 h lag history as inline SVG."""
    return sparkline_svg(points or [])


@register.simple_tag
def effective(ns: int | None) -> SafeString:
    """An effective time (ns) to the second, UTC; the exact nanosecond ISO and key forms on hover."""
    if ns is None:
        return format_html('<span class="muted">{}</span>', "none yet")
    when = EffectiveTime(ns)
    short = when.to_datetime().strftime("%Y-%m-%d %H:%M:%S")
    return format_html(
        '<time class="effective" datetime="{}" title="{} ({})">{}</time>',
        when.isoformat(),
        when.isoformat(),
        when.path,
        short,
    )


@register.filter
def pretty_json(value: object) -> str:
    """A job result or audit details as indented JSON (for <pre>)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@register.simple_tag
def elapsed(start: datetime | None, end: datetime | None) -> str:
    """How long something took between two times ("12 min")."""
    if start is None or end is None:
        return ""
    return duration_text((end - start).total_seconds())


# How job kinds read in the dashboard (JobKind values are identifiers).
JOB_KIND_LABELS = {
    "update": "Update",
    "update_all": "Update all",
    "rebuild": "Rebuild",
    "gc": "GC",
    "build_image": "Build image",
    "sync_state": "Sync state",
    "backup": "Backup",
    "restore": "Restore",
}


@register.filter
def job_kind(kind: str) -> str:
    """`{{ job.kind|job_kind }}`: "GC", "Build image"."""
    return JOB_KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _last_error(server, missing: int = 0) -> str:
    """The fleet row's "last error" cell: unreachable, the failed key and error, missing updates, or late keys."""
    if server.unreachable_since:
        error = server.unreachable_error
        return f'<span title="{_esc(error)}">unreachable: {_esc(_clip(error, 90))}</span>'
    if server.failed_key or server.last_error:
        key = (
            f'<code class="key" title="failed key">{_esc(_clip(server.failed_key, 80))}</code> '
            if server.failed_key
            else ""
        )
        error = server.last_error
        return f'{key}<span title="{_esc(error)}">{_esc(_clip(error, 90))}</span>'
    if missing:
        return f"{missing} update{'' if missing == 1 else 's'} it still needs missing from the bucket"
    if server.late_keys:
        n = len(server.late_keys)
        return f"{n} late key{'' if n == 1 else 's'} outside the window"
    return '<span class="muted">none</span>'


@register.simple_tag
def fleet_rows(rows) -> SafeString:
    """The fleet table's rows (`servers.dashboard.FleetRow`), built with the tags above.

    Rendered here rather than in a template loop: with a thousand servers the loop's
    per-tag overhead alone took several times the page's whole time budget.
    """
    now = timezone.now()
    server_url = reverse("server", args=["-"])[:-2]  # "/servers/" whatever the URL prefix
    empty_spark = sparkline_svg([])
    html_rows = []
    for row in rows:
        server, lag = row.server, row.lag
        name = _esc(server.name)
        html_rows.append(
            f'<tr id="server-{name}" class="state-{lag.state}">'
            f'<td data-label="Server" class="nowrap"><a href="{server_url}{quote(server.name, safe="")}/">{name}</a></td>'
            f'<td data-label="State" class="state">{badge(lag.state)}</td>'
            f'<td data-label="Pending" class="num pending">{pending(lag.pending_updates)}</td>'
            f'<td data-label="Lag" class="lag">{lag_text(lag.pending_updates, lag.lag_seconds)}</td>'
            f'<td data-label="Last report" class="nowrap">{reltime(server.last_report_at, now=now)}</td>'
            f'<td data-label="Last error" class="error-cell">{_last_error(server, lag.missing_updates)}</td>'
            f'<td data-label="Lag, 24 h">{row.spark or empty_spark}</td></tr>\n'
        )
    return mark_safe("".join(html_rows))
