"""REST API v1: the audit log, newest first, for operators."""

from __future__ import annotations

from rest_framework import mixins

from accounts.permissions import OPERATORS, ApiViewSet
from audit.api.filters import AuditEventFilter
from audit.api.serializers import AuditEventSerializer
from audit.models import AuditEvent


class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Who did what, when, with which request id (append-only, hash-chained)."""

    roles = {"list": OPERATORS, "retrieve": OPERATORS}
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    queryset = AuditEvent.objects.order_by("-id")
