"""Failed logins go to the audit log (DESIGN §6: every login failure is audited)."""

from __future__ import annotations

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from audit.services import record


@receiver(user_login_failed)
def audit_login_failure(sender, credentials: dict, request=None, **kwargs) -> None:
    """Record who tried (the username given, never the password) and from where."""
    username = str(credentials.get("username", ""))[:150]
    ip = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    record("anonymous", "login.failed", username, {"ip": ip})
