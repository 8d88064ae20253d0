"""Rate limits per API token (`DEFAULT_THROTTLE_RATES["token"]`), answered with 429 and Retry-After."""

from __future__ import annotations

from rest_framework.throttling import SimpleRateThrottle

from accounts.models import ApiToken


class TokenRateThrottle(SimpleRateThrottle):
    """One bucket per token; web sessions count per user and anonymous callers per address."""

    scope = "token"

    def get_cache_key(self, request, view) -> str:
        auth = getattr(request, "auth", None)
        if isinstance(auth, ApiToken):
            ident = f"token-{auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"addr-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
