"""Template tags of the fleet: lag, its 24 h sparkline, and the fleet table's rows."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from dmsupdate.templatetags.dashboard import badge, duration_text, esc, reltime
from servers.dashboard import PENDING_CAP

register = template.Library()


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


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _last_error(server, missing: int = 0) -> str:
    """The fleet row's "last error" cell: unreachable, the failed key and error, missing updates, or late keys."""
    if server.unreachable_since:
        error = server.unreachable_error
        return f'<span title="{esc(error)}">unreachable: {esc(_clip(error, 90))}</span>'
    if server.failed_key or server.last_error:
        key = (
            f'<code class="key" title="failed key">{esc(_clip(server.failed_key, 80))}</code> '
            if server.failed_key
            else ""
        )
        error = server.last_error
        return f'{key}<span title="{esc(error)}">{esc(_clip(error, 90))}</span>'
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
        name = esc(server.name)
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
