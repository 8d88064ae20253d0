"""Shared API plumbing: every error is JSON `{"error": code, "detail": text}`."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from dmsupdate.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    StoreFailed,
    TooLarge,
    Unavailable,
)

log = logging.getLogger(__name__)

# The one place domain errors become HTTP statuses.
STATUS_OF: dict[type[DomainError], int] = {
    Invalid: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    StoreFailed: 502,
    Unavailable: 503,
}


class ApiError(exceptions.APIException):
    """An API refusal with an explicit code, status and human-readable detail."""

    def __init__(self, code: str, detail: str, status_code: int = 400, headers: dict | None = None):
        self.code = code
        self.status_code = status_code
        self.headers = headers or {}
        super().__init__(detail=detail, code=code)


def from_domain(exc: DomainError) -> ApiError:
    """The API refusal of a service's domain error (status from STATUS_OF, Retry-After when given)."""
    status_code = next((code for cls, code in STATUS_OF.items() if isinstance(exc, cls)), 400)
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    return ApiError(exc.code, exc.detail, status_code, headers)


def _code(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return exc.code
    if isinstance(exc, exceptions.ValidationError):
        return "invalid"
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        return "unauthenticated"
    if isinstance(exc, exceptions.PermissionDenied):
        return "forbidden"
    if isinstance(exc, exceptions.NotFound):
        return "not_found"
    if isinstance(exc, exceptions.Throttled):
        return "throttled"
    if isinstance(exc, exceptions.MethodNotAllowed):
        return "method_not_allowed"
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return "unsupported_media_type"
    if isinstance(exc, exceptions.ParseError):
        return "parse_error"
    if isinstance(exc, exceptions.NotAcceptable):
        return "not_acceptable"
    return getattr(exc, "default_code", "error")


def _detail(data: Any) -> str:
    if isinstance(data, dict):
        if set(data) == {"detail"}:
            return _detail(data["detail"])
        return "; ".join(f"{k}: {_detail(v)}" for k, v in data.items())
    if isinstance(data, list):
        return "; ".join(_detail(v) for v in data)
    return str(data)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF exception handler giving the contract's error body for every failure."""
    if isinstance(exc, DomainError):
        exc = from_domain(exc)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.messages)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        # Django refuses the body from its Content-Length, before reading it (a report of 20 MB).
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = ApiError("too_large", f"the request body is larger than {limit} bytes; refused", 413)
    elif isinstance(exc, SuspiciousOperation):
        exc = ApiError("invalid", f"the request was refused: {exc}", 400)
    if isinstance(exc, OperationalError | InterfaceError):
        # The database went away (restart, failover, a killed backend): a retry will do.
        log.warning("database unavailable: %s", exc)
        exc = ApiError(
            "database_unavailable",
            "the registry database is unavailable; nothing was recorded, retry later",
            503,
            {"Retry-After": "5"},
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        log.exception("unhandled API error", exc_info=exc)
        return Response(
            {"error": "server_error", "detail": "internal error; the request id is in the logs"},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    body: dict[str, Any] = {"error": _code(exc), "detail": _detail(response.data)}
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        body["fields"] = exc.detail
    if isinstance(exc, exceptions.Throttled) and exc.wait:
        response["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
    if isinstance(exc, ApiError):
        for name, value in exc.headers.items():
            response[name] = value
    response.data = body
    return response


def json_error(code: str, detail: str, status_code: int) -> JsonResponse:
    """The same error body for plain Django views (404/500 handlers, /healthz)."""
    return JsonResponse({"error": code, "detail": detail}, status=status_code)
