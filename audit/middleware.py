"""Request ids: one per request, echoed in `X-Request-Id`, logged and written to the audit log."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.http import HttpRequest, HttpResponse

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def current_request_id() -> str:
    """The id of the request being served, or "" outside a request (workers use the job id)."""
    return _request_id.get()


@contextmanager
def request_id_scope(value: str) -> Iterator[None]:
    """Bind an id for the code run inside (background jobs use `job-{id}`); the previous one after."""
    token = _request_id.set(value)
    try:
        yield
    finally:
        _request_id.reset(token)


class RequestIdMiddleware:
    """Take a well-formed incoming `X-Request-Id` or make one; expose it on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-Id", "")
        rid = incoming if _SAFE.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = rid  # type: ignore[attr-defined]
        token = _request_id.set(rid)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response["X-Request-Id"] = rid
        return response


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record (structured logs match audit rows)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get() or "-"
        return True
