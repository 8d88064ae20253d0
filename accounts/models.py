"""API tokens and the roles that decide what a caller may do."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    """Who may do what: viewers see, operators act, publishers publish, agents report."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    PUBLISHER = "publisher"
    AGENT = "agent"


def hash_token(key: str) -> str:
    """Tokens are stored only as their SHA-256; the key itself is shown once."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the REST API (`Authorization: Token KEY`), stored hashed."""

    name = models.CharField(max_length=100)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    role = models.CharField(max_length=16, choices=Role.choices)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="first characters of the key, to recognise it")
    # Publisher scope: empty means every dataset / every label.
    datasets = models.ManyToManyField("publications.Dataset", blank=True, related_name="tokens")
    labels = models.JSONField(default=list, blank=True)
    # Agent tokens report for exactly one server.
    server = models.ForeignKey(
        "servers.Server", on_delete=models.CASCADE, null=True, blank=True, related_name="tokens"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Noted at most every five minutes (accounts.authentication.LAST_USED_EVERY).
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.role}, {self.prefix}…)"

    @staticmethod
    def new_key() -> str:
        return "dms_" + secrets.token_urlsafe(32)

    @classmethod
    def issue(
        cls, user, role: str, name: str = "", server=None, labels=None, datasets=()
    ) -> tuple[ApiToken, str]:
        """Create a token and return it with its key (the only time the key is known)."""
        key = cls.new_key()
        token = cls.objects.create(
            name=name or f"{role}-{key[4:10]}",
            user=user,
            role=role,
            key_hash=hash_token(key),
            prefix=key[:8],
            server=server,
            labels=list(labels or []),
        )
        if datasets:
            token.datasets.set(datasets)
        return token, key

    @classmethod
    def revoke_unscoped(cls, pks: list[int], when) -> list[str]:
        """Revoke the tokens among `pks` left limited to no dataset; return their names.

        An empty dataset scope means "every dataset": a token whose datasets
        were all deleted would otherwise widen to all of them.
        """
        emptied = cls.objects.filter(pk__in=pks, revoked_at__isnull=True, datasets__isnull=True)
        names = list(emptied.values_list("name", flat=True))
        cls.objects.filter(pk__in=pks, revoked_at__isnull=True, datasets__isnull=True).update(revoked_at=when)
        return names


class ThrottleBucket(models.Model):
    """How far one caller's request budget is spent (`accounts.throttles`), shared by every web process."""

    ident = models.CharField(max_length=100, primary_key=True)
    # Epoch seconds up to which the caller's allowance is used; the caller may send
    # again while this is at most one throttle period ahead of now.
    spent_until = models.FloatField()

    def __str__(self) -> str:
        return f"{self.ident} spent until {self.spent_until:.3f}"
