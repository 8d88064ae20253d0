"""Who may see and do what on the dashboard: viewers see, operators act (HTML views' guards)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
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
