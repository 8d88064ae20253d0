"""The append-only, hash-chained audit log of who did what."""

from __future__ import annotations

import hashlib
import json

from django.db import models


class AuditEvent(models.Model):
    """One recorded action; rows are never updated or deleted (a PostgreSQL trigger enforces it)."""

    at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=200, db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=1024, blank=True, db_index=True)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["action", "at"]), models.Index(fields=["target", "at"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"

    def compute_hash(self) -> str:
        """The row's hash over its content and the previous row's hash."""
        payload = json.dumps(
            {
                "at": self.at.isoformat(),
                "actor": self.actor,
                "action": self.action,
                "target": self.target,
                "request_id": self.request_id,
                "details": self.details,
                "prev": self.prev_hash,
            },
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()
