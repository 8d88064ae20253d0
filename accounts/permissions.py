"""Who may call what in the REST API: one table per view, denied unless listed.

Each API view names, per action, the roles allowed to call it (`roles`);
`RolePermission` enforces the table. Publishers may further be limited to
datasets and labels by their token (`publish_scope`).
"""

from __future__ import annotations

from typing import Any

from django.db import DataError
from rest_framework import viewsets
from rest_framework.permissions import BasePermission

from accounts.models import ApiToken, Role
from accounts.roles import role_of
from accounts.scopes import UNLIMITED, PublishScope
from dmsupdate.api import ApiError

READERS = frozenset({Role.VIEWER, Role.OPERATOR, Role.PUBLISHER})
OPERATORS = frozenset({Role.OPERATOR})
PUBLISHERS = frozenset({Role.PUBLISHER, Role.OPERATOR})
AGENTS = frozenset({Role.AGENT})


def token_of(request: Any) -> ApiToken | None:
    """The ApiToken that authenticated the request, or None for a web session."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiToken) else None


def request_role(request: Any) -> str | None:
    """The caller's role for this request (token role, else the web user's group)."""
    return role_of(request.user, token_of(request))


class RolePermission(BasePermission):
    """Allow an action only to the roles the view's `roles` table lists for it."""

    message = "your role may not do this"

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        if getattr(view, "action", "") is None and request.method.lower() not in getattr(
            view, "action_map", {}
        ):
            return True  # a method the view lacks: let DRF answer 405, not 403
        action = getattr(view, "action", None) or request.method.lower()
        allowed = getattr(view, "roles", {}).get(action, frozenset())
        role = request_role(request)
        if role in allowed:
            return True
        self.message = f"the {role or 'anonymous'} role may not call {action} here"
        return False


def publish_scope(request: Any) -> PublishScope:
    """The datasets and labels the caller may publish to (a publisher token's scope; others: unlimited)."""
    token = token_of(request)
    if token is None or token.role != Role.PUBLISHER:
        return UNLIMITED
    return PublishScope(scoped_dataset_ids(token), tuple(token.labels or ()))


def readable_dataset_ids(request: Any) -> set[int] | None:
    """Datasets a scoped publisher token may read; None means every dataset."""
    token = token_of(request)
    if token is None or token.role != Role.PUBLISHER:
        return None
    return scoped_dataset_ids(token) or None


def scoped_dataset_ids(token: ApiToken) -> frozenset[int]:
    """The datasets a token is limited to (empty: all), read once per request."""
    ids = getattr(token, "_scoped_dataset_ids", None)
    if ids is None:
        ids = frozenset(token.datasets.order_by().values_list("pk", flat=True))
        token._scoped_dataset_ids = ids  # type: ignore[attr-defined]
    return ids


class ApiViewSet(viewsets.GenericViewSet):
    """Common ground of every API view: the role table (`roles`) and the per-token throttle."""

    permission_classes = [RolePermission]
    roles: dict[str, frozenset[str]] = {}

    def handle_exception(self, exc: Exception):
        # Input PostgreSQL cannot hold or compare (a NUL byte, a time zone offset
        # out of range) surfaces as DataError: the caller's fault, so a 400.
        if isinstance(exc, DataError):
            exc = ApiError(
                "invalid_value", f"a value in the request cannot be used: {str(exc).splitlines()[0]}"
            )
        return super().handle_exception(exc)

    def get_throttles(self):
        from accounts.throttles import TokenRateThrottle

        return [TokenRateThrottle()]
