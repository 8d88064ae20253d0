"""The server page's lag chart: server-rendered SVG with a time axis, over 24 hours or 7 days.

Two panels share the time axis: how far behind the server was (time) and how many
updates it had to replay (pending). Each value holds until the next report (a step),
and the chart ends at the current lag. Only numbers and escaped labels are inserted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from dmsupdate.templatetags.dashboard import duration_text

WIDTH, PANEL, LEFT, RIGHT, GAP, AXIS = 720, 96, 64, 12, 40, 18
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}


@dataclass(frozen=True)
class LagPoint:
    """The lag reported at one moment."""

    at: datetime
    pending: int
    seconds: float


def _ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Time axis labels (UTC): every 4 hours over a day, every day over a week."""
    span = end - start
    if span <= timedelta(hours=30):
        step, fmt = timedelta(hours=4), "%H:%M"
        first = start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        while first.hour % 4:
            first += timedelta(hours=1)
    else:
        step, fmt = timedelta(days=1), "%a %d"
        first = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    ticks = []
    while first < end:
        ticks.append((first, first.strftime(fmt)))
        first += step
    return ticks


def _panel(
    points: list[LagPoint], start: datetime, end: datetime, top_y: int, value, label, title: str
) -> str:
    span = (end - start).total_seconds()
    inner = WIDTH - LEFT - RIGHT
    highest = max([value(p) for p in points] + [0])
    scale = highest or 1

    def x(at: datetime) -> float:
        return LEFT + inner * max(0.0, min(1.0, (at - start).total_seconds() / span))

    def y(v: float) -> float:
        return top_y + PANEL - (v / scale) * (PANEL - 6)

    parts = [
        f'<text class="chart-title" x="{LEFT}" y="{top_y - 6}">{escape(title)}</text>',
        f'<line class="chart-axis" x1="{LEFT}" y1="{top_y + PANEL}" x2="{WIDTH - RIGHT}" y2="{top_y + PANEL}"/>',
        f'<line class="chart-grid" x1="{LEFT}" y1="{y(scale):.1f}" x2="{WIDTH - RIGHT}" y2="{y(scale):.1f}"/>',
        f'<text class="chart-label" x="{LEFT - 6}" y="{y(scale) + 4:.1f}" text-anchor="end">{escape(label(highest))}</text>',
        f'<text class="chart-label" x="{LEFT - 6}" y="{top_y + PANEL + 4}" text-anchor="end">0</text>',
    ]
    if points:
        coords = []
        for i, point in enumerate(points):
            if i:
                coords.append(f"{x(point.at):.1f},{y(value(points[i - 1])):.1f}")
            coords.append(f"{x(point.at):.1f},{y(value(point)):.1f}")
        line = " ".join(coords)
        first_x, last_x = x(points[0].at), x(points[-1].at)
        base = top_y + PANEL
        parts.append(
            f'<polygon class="chart-area" points="{first_x:.1f},{base} {line} {last_x:.1f},{base}"/>'
        )
        parts.append(f'<polyline class="chart-line" fill="none" points="{line}"/>')
        parts.append(f'<circle class="chart-now" cx="{last_x:.1f}" cy="{y(value(points[-1])):.1f}" r="3"/>')
    return "".join(parts)


def lag_chart(points: list[LagPoint], start: datetime, end: datetime, caption: str) -> SafeString:
    """The two-panel chart of `points` (oldest first, the last one now) between `start` and `end`."""
    height = AXIS + 2 * (PANEL + GAP) + AXIS
    top1, top2 = AXIS, AXIS + PANEL + GAP
    ticks = []
    inner = WIDTH - LEFT - RIGHT
    span = (end - start).total_seconds()
    for at, text in _ticks(start, end):
        x = LEFT + inner * (at - start).total_seconds() / span
        ticks.append(
            f'<line class="chart-grid" x1="{x:.1f}" y1="{top1}" x2="{x:.1f}" y2="{top2 + PANEL}"/>'
            f'<text class="chart-label" x="{x:.1f}" y="{top2 + PANEL + 14}" text-anchor="middle">{escape(text)}</text>'
        )
    body = (
        "".join(ticks)
        + _panel(
            points,
            start,
            end,
            top1,
            lambda p: p.seconds,
            lambda v: duration_text(v) if v >= 1 else "0 s",
            "Behind by (time)",
        )
        + _panel(points, start, end, top2, lambda p: p.pending, lambda v: f"{int(v):,}", "Updates to replay")
    )
    empty = (
        ""
        if points
        else f'<text class="chart-label" x="{WIDTH / 2}" y="{top1 + PANEL / 2}" text-anchor="middle">no report in this period</text>'
    )
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" preserveAspectRatio="xMinYMin meet">'
        f"<title>{escape(caption)}</title>{body}{empty}</svg>"
    )
