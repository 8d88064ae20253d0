"""Template tags of the fleet: lag (and time to catch up), its 24 h sparkline, and the fleet table's rows."""

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
from servers.sparklines import SPARK_HOURS

register = template.Library()


@register.filter
def pending(count: int | None) -> str:
    """A pending-updates count; beyond the fleet page's cap it reads "1,000+"."""
    count = count or 0
    return f"{PENDING_CAP:,}+" if count > PENDING_CAP else f"{count:,}"


def catch_up_text(seconds: float | None) -> str:
    """`catch_up_seconds` as an admin reads it: "≈ 4 min to catch up" (empty when unknown or caught up)."""
    if not seconds:
        return ""
    return f"≈ {duration_text(seconds)} to catch up"


def lag_text(count: int | None, lag_seconds: float | None, catch_up: float | None = None) -> str:
    """A lag the way an admin reads it: "4 updates, 12 min behind · ≈ 2 min to catch up", "up to date"."""
    if lag_seconds is None:
        return f"never reported, {pending(count)} updates to replay"
    if not count:
        return "up to date"
    updates = "1 update" if count == 1 else f"{pending(count)} updates"
    estimate = catch_up_text(catch_up)
    return f"{updates}, {duration_text(lag_seconds)} behind" + (f" · {estimate}" if estimate else "")


@register.simple_tag
def lag(pending: int | None, lag_seconds: float | None, catch_up: float | None = None) -> str:
    """`{% lag lag.pending_updates lag.lag_seconds lag.catch_up_seconds %}`."""
    return lag_text(pending, lag_seconds, catch_up)


SPARK_WIDTH = 120
SPARK_HEIGHT = 24


def sparkline_svg(
    hours: Sequence[tuple[int, float, float]],
    current: float | None,
    top: float,
    label: str = "lag over the last 24 h",
    span: int = SPARK_HOURS,
) -> SafeString:
    """An inline SVG of a server's lag over the last day, on a scale shared with its neighbours (`top`).

    `hours` holds, oldest first, the reported hours among the last `span` as
    (hour from the first, worst lag, lag at the hour's last report); servers.dashboard.lag_history
    reads them. Within an hour the line goes from the worst to the last value, then holds
    until the next reported hour (a step), and ends at the `current` lag at the right edge:
    a server that caught up this hour shows the drop and ends green. Built as one string,
    not a template: the fleet page renders hundreds.
    """
    if not hours and current is None:
        return format_html('<span class="spark-empty" title="{}">no reports in 24 h</span>', label)
    w, h = SPARK_WIDTH, SPARK_HEIGHT
    top = max(top, 60.0)
    slot = w // max(1, span)
    base, scale = h - 2, (h - 4) / top  # y of a lag of 0, and pixels per second of lag
    # Whole pixels, and a point only where the line changes: the fleet page draws hundreds
    # of these, and integer formatting is the cheap kind.
    coords: list[str] = []
    previous: float | None = None  # the lag at the last report drawn
    level = -1  # its y
    highest = 0.0
    for i, worst, last in hours:
        high = round(base - (worst if worst < top else top) * scale)
        low = high if last == worst else round(base - (last if last < top else top) * scale)
        if worst > highest:
            highest = worst
        previous = last
        if high == low == level:
            continue  # no change at this resolution: the step goes on
        x = i * slot
        if level >= 0:
            coords.append(f"{x},{level}")
        coords.append(f"{x},{high}")
        if low != high:
            coords.append(f"{x + slot},{low}")
        level = low
    now = current if current is not None else previous or 0.0
    end = round(base - min(now, top) * scale)
    if level >= 0:
        coords.append(f"{w},{level}")
    coords.append(f"{w},{end}")
    if len(coords) == 1:
        coords.insert(0, f"{w - 4},{end}")
    tone = "flat" if now == 0 else "up"
    title = escape(
        f"{label}: now {duration_text(now) + ' behind' if now else 'up to date'}"
        + (f", at most {duration_text(highest)} behind" if highest > now else "")
    )
    return mark_safe(
        f'<svg class="spark spark-{tone}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">'
        f"<title>{title}</title>"
        f'<polyline fill="none" points="{" ".join(coords)}"/>'
        f'<circle cx="{w - 2}" cy="{end}" r="2"/></svg>'
    )


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


def readiness(server) -> str:
    """Beside the state: what the agent's GET /ready said at its last report (nothing when it never said)."""
    ready = getattr(server, "ready", None)
    if ready is None:
        return ""
    if ready:
        return ' <span class="ready" title="the agent answers GET /ready with 200">ready</span>'
    reason = esc(getattr(server, "ready_reason", "") or "not ready")
    return f' <span class="not-ready" title="{reason}">not ready</span>'


@register.simple_tag
def ready_mark(server) -> SafeString:
    return mark_safe(readiness(server))  # noqa: S308 - built from escaped text


@register.simple_tag
def fleet_rows(rows, form: str = "") -> SafeString:
    """The fleet table's rows (`servers.dashboard.FleetRow`), built with the tags above.

    With `form` (operators), each row starts with a checkbox belonging to that form
    (the section's "with the selected servers" actions).
    Rendered here rather than in a template loop: with a thousand servers the loop's
    per-tag overhead alone took several times the page's whole time budget.
    """
    now = timezone.now()
    server_url = reverse("server", args=["-"])[:-2]  # "/servers/" whatever the URL prefix
    html_rows = []
    for row in rows:
        server, lag = row.server, row.lag
        name = esc(server.name)
        pick = (
            f'<td class="pick"><input type="checkbox" class="pick" name="servers" value="{name}"'
            f' form="{esc(form)}" aria-label="select {name}"></td>'
            if form
            else ""
        )
        html_rows.append(
            f'<tr id="server-{name}" class="state-{lag.state}">{pick}'
            f'<td data-label="Server" class="nowrap"><a href="{server_url}{quote(server.name, safe="")}/">{name}</a></td>'
            f'<td data-label="State" class="state">{badge(lag.state)}{readiness(server)}</td>'
            f'<td data-label="Pending" class="num pending">{pending(lag.pending_updates)}</td>'
            f'<td data-label="Lag" class="lag">{lag_text(lag.pending_updates, lag.lag_seconds, lag.catch_up_seconds)}</td>'
            f'<td data-label="Last report" class="nowrap">{reltime(server.last_report_at, now=now)}</td>'
            f'<td data-label="Last error" class="error-cell">{_last_error(server, lag.missing_updates)}</td>'
            f'<td data-label="Lag, 24 h">{row.spark}</td></tr>\n'
        )
    return mark_safe("".join(html_rows))
