"""The role of a web user or token, shared by the API permissions and the dashboard."""

from __future__ import annotations

from typing import Any

from accounts.models import Role

# Web users get their role from a group of the same name; superusers are operators.
RANK = {Role.VIEWER: 1, Role.PUBLISHER: 1, Role.AGENT: 0, Role.OPERATOR: 2}


def role_of(user: Any, token: Any = None) -> str | None:
    """The caller's role: the token's when a token authenticated, else the user's group."""
    if token is not None:
        return token.role
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    if user.is_superuser:
        return Role.OPERATOR
    names = set(user.groups.values_list("name", flat=True))
    for role in (Role.OPERATOR, Role.PUBLISHER, Role.VIEWER):
        if role in names:
            return role
    return Role.VIEWER if user.is_staff else None


def can_view(role: str | None) -> bool:
    return role in (Role.VIEWER, Role.OPERATOR, Role.PUBLISHER)


def can_operate(role: str | None) -> bool:
    return role == Role.OPERATOR
