"""One login throttle for every way to log in: the dashboard's form, the admin's, and any `authenticate()` call.

Failed attempts are counted per address and per username in the cache; past
the limit, the backend refuses before checking the password (so a right
password after 40 wrong ones is refused too) until the lockout passes. The
reason reaches the audit log (audit.receivers) on the request.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied

THROTTLED = "throttled"


def limits() -> tuple[int, int]:
    """Failed attempts allowed, and the lockout (seconds) that follows."""
    conf = settings.DMSUPDATE
    return conf.get("LOGIN_FAILURE_LIMIT", 10), conf.get("LOGIN_LOCKOUT_SECONDS", 900)


def _counters(request: Any, username: str) -> list[str]:
    ip = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    # Hashed so any username (spaces, unicode, 150 chars) makes a valid cache key.
    name = hashlib.sha256(str(username or "").strip().lower().encode()).hexdigest()[:32]
    return [f"login-failures:ip:{ip}", f"login-failures:user:{name}"]


def is_throttled(request: Any, username: str) -> bool:
    """Whether this address or this username has used up its failed attempts."""
    limit, _ = limits()
    return any((cache.get(key) or 0) >= limit for key in _counters(request, username))


def note_failure(request: Any, username: str) -> None:
    _, lockout = limits()
    for key in _counters(request, username):
        # add() starts the window on the first failure; incr() keeps its expiry.
        if not cache.add(key, 1, lockout):
            try:
                cache.incr(key)
            except ValueError:
                cache.set(key, 1, lockout)


class ThrottledModelBackend(ModelBackend):
    """Django's model backend behind the login throttle (settings.AUTHENTICATION_BACKENDS)."""

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None, **kwargs):
        name = username if username is not None else kwargs.get("email", "")
        if is_throttled(request, name or ""):
            if request is not None:
                request.login_failure_reason = THROTTLED
            raise PermissionDenied(
                "too many failed logins"
            )  # stops authenticate(); Django signals the failure
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None and password is not None:
            note_failure(request, name or "")
        return user
