"""Dashboard login and logout (Django auth), with failed attempts limited per address and per username."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.core.exceptions import ValidationError


def _limits() -> tuple[int, int]:
    conf = settings.DMSUPDATE
    return conf.get("LOGIN_FAILURE_LIMIT", 10), conf.get("LOGIN_LOCKOUT_SECONDS", 900)


def _counters(ip: str, username: str) -> list[str]:
    # Hashed so any username (spaces, unicode, 150 chars) makes a valid cache key.
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [f"login-failures:ip:{ip}", f"login-failures:user:{name}"]


def _refused(form: AuthenticationForm, username: str, reason: str) -> None:
    """Tell the audit log (audit.receivers) why this login was refused."""
    user_login_failed.send(
        sender=ThrottledAuthenticationForm,
        credentials={"username": username},
        request=form.request,
        reason=reason,
    )


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's login form, refusing a caller with too many recent failures and auditing every failure."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed logins from here or for this account. Wait %(minutes)s minutes and try again.",
    }

    def clean(self):
        ip = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        username = (self.data.get("username") or "")[:150]
        limit, lockout = _limits()
        keys = _counters(ip, username)
        if any((cache.get(key) or 0) >= limit for key in keys):
            _refused(self, username, "throttled")
            raise ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"minutes": max(1, lockout // 60)},
            )
        try:
            return super().clean()
        except ValidationError as exc:
            for key in keys:
                # add() starts the window on the first failure; incr() keeps its expiry.
                if not cache.add(key, 1, lockout):
                    try:
                        cache.incr(key)
                    except ValueError:
                        cache.set(key, 1, lockout)
            _refused(self, username, exc.error_list[0].code or "invalid_login")
            raise


class LoginView(auth_views.LoginView):
    """The dashboard login page."""

    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True
