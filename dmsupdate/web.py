"""Shared pieces of the dashboard's HTML views: access (viewers see, operators act), pages, filters, paging."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import wraps
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render, resolve_url
from django.views.decorators.http import require_POST

from accounts.roles import can_operate, can_view, role_of

View = Callable[..., HttpResponse]


def _role(request: HttpRequest) -> str | None:
    # Cached on the request: a page asks several times (guard, template, nav).
    if not hasattr(request, "_dashboard_role"):
        request._dashboard_role = role_of(request.user)  # type: ignore[attr-defined]
    return request._dashboard_role  # type: ignore[attr-defined]


def _to_login(request: HttpRequest) -> HttpResponse:
    if request.headers.get("HX-Request"):
        # A polled fragment after the session ended: send the whole page to login,
        # rather than swapping the login form into a table.
        # Back to the page the fragment belongs to (htmx names it), not to the fragment.
        page_path = urlsplit(request.headers.get("HX-Current-URL", "")).path or request.path
        response = HttpResponse(status=204)
        response["HX-Redirect"] = f"{resolve_url(settings.LOGIN_URL)}?next={quote(page_path)}"
        return response
    return redirect_to_login(request.get_full_path())


def viewer_required(view: View) -> View:
    """Logged-in users with a role that may see the dashboard; others go to login or get 403."""

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return _to_login(request)
        if not can_view(_role(request)):
            raise PermissionDenied("your account has no dashboard role (viewer, operator or publisher)")
        return view(request, *args, **kwargs)

    return guarded


def operator_required(view: View) -> View:
    """Operators only; anyone else gets 403 (a viewer posting an action is refused, not ignored)."""

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return _to_login(request)
        if not can_operate(_role(request)):
            raise PermissionDenied("only operators may do this")
        return view(request, *args, **kwargs)

    return guarded


def operator_action(view: View) -> View:
    """A POST-only operator action (CSRF is checked by the middleware before this runs)."""
    return require_POST(operator_required(view))


def page(request: HttpRequest, template: str, context: dict | None = None, status: int = 200) -> HttpResponse:
    """Render a dashboard page with the caller's role, so templates show actions to operators only."""
    role = _role(request)
    full = {"role": role, "can_operate": can_operate(role), **(context or {})}
    return render(request, template, full, status=status)


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
