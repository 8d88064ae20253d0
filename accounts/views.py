"""Dashboard login and logout (Django auth); failed attempts are limited by accounts.backends, as for every login."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from accounts.backends import THROTTLED, limits


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's login form, telling a caller with too many recent failures to wait."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed logins from here or for this account. Wait %(minutes)s minutes and try again.",
    }

    def clean(self):
        try:
            return super().clean()
        except ValidationError:
            if getattr(self.request, "login_failure_reason", None) == THROTTLED:
                raise ValidationError(
                    self.error_messages["throttled"],
                    code="throttled",
                    params={"minutes": max(1, limits()[1] // 60)},
                ) from None
            raise


class LoginView(auth_views.LoginView):
    """The dashboard login page."""

    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True
