"""`Authorization: Token KEY` authentication against hashed API tokens."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts.models import ApiToken, hash_token


class TokenAuthentication(authentication.BaseAuthentication):
    """Looks the key up by its hash; sets `request.auth` to the ApiToken."""

    keyword = "Token"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() not in (b"token", b"bearer"):
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Token KEY'")
        try:
            key = header[1].decode()
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("token is not valid text") from exc
        try:
            # get(), not first(): the key hash is unique, so no ORDER BY to build.
            token = ApiToken.objects.select_related("user").get(
                key_hash=hash_token(key), revoked_at__isnull=True
            )
        except ApiToken.DoesNotExist:
            token = None
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("unknown or revoked token")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return (token.user, token)

    def authenticate_header(self, request):
        return self.keyword
