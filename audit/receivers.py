"""Failed logins go to the audit log (DESIGN §6: every login failure is audited)."""

from __future__ import annotations

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from audit.services import record


@receiver(user_login_failed)
def audit_login_failure(sender, credentials: dict, request=None, reason: str | None = None, **kwargs) -> None:
    """Record who tried (the username given, never the password), from where, and why it failed.

    Covers every way to log in: Django sends the signal from `authenticate`
    (the dashboard's form, the admin's, scripts), once per failure; the login
    throttle (accounts.backends) leaves its reason on the request.
    """
    if reason is None:
        reason = getattr(request, "login_failure_reason", None) or "invalid_login"
    username = str(credentials.get("username", ""))[:150]
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    if reason == "throttled":
        record("anonymous", "login.throttled", username, {"ip": address})
    else:
        record("anonymous", "login.failed", username, {"ip": address, "reason": reason})
