"""Project-level views: health check and JSON error pages."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

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


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error("not_found", f"nothing at {request.path}", 404)


def server_error(request: HttpRequest) -> JsonResponse:
    return json_error("server_error", "internal error; the request id is in the logs", 500)
