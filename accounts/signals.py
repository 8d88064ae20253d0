"""Failed logins go to the audit log (DESIGN §6: every login failure is audited)."""

from __future__ import annotations

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.urls import NoReverseMatch, reverse

from audit.services import record


def _dashboard_login_path() -> str | None:
    try:
        return reverse("login")
    except NoReverseMatch:
        return None


@receiver(user_login_failed)
def audit_login_failure(sender, credentials: dict, request=None, **kwargs) -> None:
    """Record who tried (the username given, never the password) and from where.

    Covers every authentication path (the admin login, scripts calling
    `authenticate`); the dashboard's login form writes its own row, with the
    reason, so it is skipped here to keep one row per failure.
    """
    if request is not None and request.path == _dashboard_login_path():
        return
    username = str(credentials.get("username", ""))[:150]
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    record("anonymous", "login.failed", username, {"ip": address, "reason": "invalid_login"})
