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
def audit_login_failure(sender, credentials: dict, request=None, reason: str | None = None, **kwargs) -> None:
    """Record who tried (the username given, never the password), from where, and why it failed.

    Covers every authentication path: Django sends the signal from `authenticate`
    (the admin login, scripts); the dashboard's login form sends its own, with the
    reason (`throttled`, `invalid_login`, `inactive`), so Django's signal for that
    form is skipped to keep one row per failure.
    """
    if reason is None:
        if request is not None and request.path == _dashboard_login_path():
            return
        reason = "invalid_login"
    username = str(credentials.get("username", ""))[:150]
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    if reason == "throttled":
        record("anonymous", "login.throttled", username, {"ip": address})
    else:
        record("anonymous", "login.failed", username, {"ip": address, "reason": reason})
