"""Pages that belong to no single app: the health check and the error pages (JSON under /api/, HTML elsewhere)."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve

from dmsupdate.api import json_error


def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers, 503 otherwise (for load balancers and monitors)."""
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    except DatabaseError as exc:
        return json_error(
            "database_unavailable", f"the database does not answer: {exc.__class__.__name__}", 503
        )
    return JsonResponse({"status": "ok", "database": connection.vendor})


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404: JSON for the API, a page with a way home for everything else.

    Also the view of every /api/ path no route takes, so that the API answers JSON even
    where Django would show its debug page or redirect to the path with a slash (which
    loses a POST's body).
    """
    if _wants_json(request):
        detail = f"nothing at {request.path}"
        if not request.path.endswith("/") and _resolves(request.path + "/"):
            detail += f"; did you mean {request.path}/ ?"
        return json_error("not_found", detail, 404)
    body = render_to_string("404.html", {"path": request.path}, request=request)
    return HttpResponse(body, status=404)


def _resolves(path: str) -> bool:
    try:
        return resolve(path).func is not not_found
    except Resolver404:
        return False


def server_error(request: HttpRequest) -> HttpResponse:
    """500: JSON for the API, a plain page (no traceback, the request id) for everything else."""
    if _wants_json(request):
        return json_error("server_error", "internal error; the request id is in the logs", 500)
    # Rendered without context processors: whatever failed may fail again in them.
    body = render_to_string("500.html", {"request_id": getattr(request, "request_id", "")})
    return HttpResponse(body, status=500)


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """403: JSON for the API, a page saying why for everything else."""
    if _wants_json(request):
        return json_error("forbidden", "you may not do this", 403)
    body = render_to_string("403.html", {"reason": str(exception or "")}, request=request)
    return HttpResponse(body, status=403)
