"""JSON shape of an audit event (GET /api/v1/audit/)."""

from __future__ import annotations

from rest_framework import serializers

from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    """One audit row with its place in the hash chain."""

    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor", "action", "target", "request_id", "details", "prev_hash", "hash"]
        read_only_fields = fields
