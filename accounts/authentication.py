"""`Authorization: Token KEY` authentication against hashed API tokens."""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts.models import ApiToken, hash_token

# A token's `last_used_at` (the admin's "last used") is noted at most this often, so it is
# exact to within five minutes: an agent polling head/ every minute writes on one call in
# six, not on each (a write costs a poll about half its CPU: WAL and a commit flush).
LAST_USED_EVERY = timedelta(minutes=5)


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
        token = find_token(hash_token(key), timezone.now())
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("unknown or revoked token")
        return (token.user, token)

    def authenticate_header(self, request):
        return self.keyword


def find_token(key_hash: str, now) -> ApiToken | None:
    """The unrevoked token with this hash and its user; its use is noted if the last was long enough ago.

    The use is noted only when the user is active (an inactive user's token is refused).
    """
    if connection.vendor == "postgresql":
        return _find_token_postgresql(key_hash, now)
    try:
        # get(), not first(): the key hash is unique, so no ORDER BY to build.
        token = ApiToken.objects.select_related("user").get(key_hash=key_hash, revoked_at__isnull=True)
    except ApiToken.DoesNotExist:
        return None
    if token.user.is_active and (token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


@cache
def _token_statement() -> str:
    """Every column of the token and its user, and the use noted, in one statement (every API call runs it).

    Written out: building the same through the ORM cost more CPU than running it.
    The noted use is a data-modifying CTE, so a call whose token was used recently
    writes nothing.
    """
    tokens, users = ApiToken._meta.db_table, get_user_model()._meta.db_table
    # Aliased: both tables have an `id`.
    columns = [f"t.{f.column} AS t_{f.column}" for f in ApiToken._meta.concrete_fields]
    columns += [f"u.{f.column} AS u_{f.column}" for f in get_user_model()._meta.concrete_fields]
    return (
        f"WITH found AS (SELECT {', '.join(columns)} FROM {tokens} t JOIN {users} u ON u.id = t.user_id"
        " WHERE t.key_hash = %s AND t.revoked_at IS NULL),"
        f" noted AS (UPDATE {tokens} SET last_used_at = %s WHERE id IN (SELECT t_id FROM found WHERE u_is_active)"
        " AND (last_used_at IS NULL OR last_used_at < %s))"
        " SELECT * FROM found"
    )


def _find_token_postgresql(key_hash: str, now) -> ApiToken | None:
    with connection.cursor() as cur:
        cur.execute(_token_statement(), [key_hash, now, now - LAST_USED_EVERY])
        row = cur.fetchone()
    if row is None:
        return None
    split = len(ApiToken._meta.concrete_fields)
    token = _instance(ApiToken, row[:split])
    token.user = _instance(get_user_model(), row[split:])
    return token


def _instance(model, values):
    """A model instance from its concrete fields' column values, converted as the ORM would."""
    values = list(values)
    for n, convert, field in _converters(model):
        values[n] = convert(values[n], field, connection)
    return model.from_db(connection.alias, None, values)


@cache
def _converters(model) -> list[tuple[int, Any, Any]]:
    """(column index, converter, field) of the model's concrete fields that have one (JSON, ...)."""
    return [
        (n, convert, field)
        for n, field in enumerate(model._meta.concrete_fields)
        for convert in field.get_db_converters(connection)
    ]
