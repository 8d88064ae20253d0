"""Template tags every page uses: the one way to show a state, a time, a duration and a JSON value.

Registered for all apps' templates as the `dashboard` library (settings.TEMPLATES);
the fleet's own tags (lag, sparkline, fleet rows) are servers' `fleet` library.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from dmsupdate.choices import tone_of
from dmsupdate.state.keys import EffectiveTime

register = template.Library()

# The standard library's escape: the same five characters as Django's, without the
# lazy-string wrapper, which showed in the fleet page's profile at a thousand rows.
esc = html.escape


@register.simple_tag
def badge(state: str | None) -> SafeString:
    """A state as a coloured pill (`{% badge server.state %}`); the single rendering of any state.

    The colour is the choice's own (dmsupdate.choices): a member, or a value as stored.
    """
    text = str(state or "unknown")
    return mark_safe(f'<span class="badge badge-{tone_of(text)}">{esc(text)}</span>')


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
        return mark_safe(f'<span class="muted">{esc(empty)}</span>')
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


# List items shown of a job result's lists (GC's keys, ...); the rest are counted.
READABLE_ITEMS = 50


def _readable(value: object, skip: tuple[str, ...] = ()) -> str:
    if isinstance(value, dict):
        if not value:
            return '<span class="muted">none</span>'
        items = "".join(
            f"<dt>{esc(str(k).replace('_', ' '))}</dt><dd>{_readable(v)}</dd>"
            for k, v in value.items()
            if k not in skip
        )
        return f'<dl class="result">{items}</dl>'
    if isinstance(value, list):
        if not value:
            return '<span class="muted">none</span>'
        shown = "".join(f"<li>{_readable(v)}</li>" for v in value[:READABLE_ITEMS])
        rest = (
            f'<li class="muted">… and {len(value) - READABLE_ITEMS:,} more</li>'
            if len(value) > READABLE_ITEMS
            else ""
        )
        return f'<ul class="keys">{shown}{rest}</ul>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "":
        return '<span class="muted">—</span>'
    return esc(str(value))


@register.simple_tag
def readable(value: object) -> SafeString:
    """A job's result or parameters for a person: nested lists and definitions, never raw JSON.

    The summary line is shown apart, so it is left out here.
    """
    return mark_safe(_readable(value, skip=("summary",)))


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
