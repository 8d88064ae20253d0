"""JSON shapes of data servers: registration, and status with replay lag (DESIGN §6)."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Case, F, Value, When
from django.db.models.functions import NullIf
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from dmsupdate.api_datetimes import datetime_output
from dmsupdate.state.keys import iso
from dmsupdate.state.status import FIELD_TYPES
from publications.models import Dataset
from servers.lag import LAG_FIELDS, Lag, lag_for, lags_of
from servers.models import Server

# What the server list reads of each server (named rows, not model instances): the output
# fields and what servers.lag.state_of needs.
LIST_FIELDS = (
    "pk",
    "name",
    "dataset_name",
    *LAG_FIELDS,
    "failed_key",
    "last_error",
    "created_at",
    "fingerprint_ns",
    "fingerprint_mode",
    "fingerprint_total",
    "divergence",
    "ready",
    "ready_reason",
)


def _column(name: str) -> Any:
    """How the list reads a field: the two JSON lists that are almost always empty come back
    as NULL then (no JSON to decode for each of ten thousand servers), the rest as stored."""
    if name == "late_keys":
        return NullIf("late_keys", Value([], output_field=models.JSONField()))
    if name == "divergence":  # shown only while the server is diverged
        return Case(When(diverged_ns__isnull=False, then=F("divergence")), default=None)
    return name


# The columns of LIST_FIELDS as read, and the row they make (late_keys None: none).
LIST_COLUMNS = tuple(_column(name) for name in LIST_FIELDS)
ListedServer = namedtuple("ListedServer", LIST_FIELDS)


def fingerprint_summary(server) -> dict | None:
    """The newest fingerprint's time, mode and total (the graphs stay in the reports)."""
    if server.fingerprint_ns is None:
        return None
    total = getattr(server, "fingerprint_total", None) or {}
    return {
        "effective_time": iso(server.fingerprint_ns),
        "mode": getattr(server, "fingerprint_mode", None),
        "triples": total.get("triples"),
        "hash": total.get("hash"),
    }


def represent(server: Any, lag: Lag, when: Callable[[datetime | None], str | None]) -> dict:
    """The fields of ServerSerializer.Meta.fields, built directly from a Server or a named row
    of LIST_FIELDS: a fleet of ten thousand servers is listed in one response, and the generic
    field-by-field walk over model instances cost more than every query behind it."""
    dataset = getattr(server, "dataset_name", None)
    return {
        "id": server.pk,
        "name": server.name,
        "dataset": dataset if dataset is not None else server.dataset.name,
        "agent_url": server.agent_url,
        "enabled": server.enabled,
        "state": lag.state,
        "ready": server.ready,
        "ready_reason": server.ready_reason,
        "pending_updates": lag.pending_updates,
        "lag_seconds": lag.lag_seconds,
        "catch_up_seconds": lag.catch_up_seconds,
        "effective_time": iso(server.effective_ns),
        "last_report_at": when(server.last_report_at),
        "last_succeeded": server.last_succeeded,
        "failed_key": server.failed_key,
        "error": server.last_error,
        "late_keys": server.late_keys or [],
        "missing_updates": lag.missing_updates,
        "rebuild_requested_at": when(server.rebuild_requested_at),
        "unreachable_since": when(server.unreachable_since),
        "created_at": when(server.created_at),
        "fingerprint": fingerprint_summary(server),
        "divergence": server.divergence if server.diverged_ns is not None else None,
    }


class ServerListSerializer(serializers.ListSerializer):
    """A list of servers: the context (lags, the timestamp writer) read once, not once per server."""

    def to_representation(self, data: Any) -> list[dict]:
        rows = list(data.all() if hasattr(data, "all") else data)
        lags = self.context.setdefault("lags", {})
        unknown = [row for row in rows if row.pk not in lags]
        if unknown:
            lags.update(lags_of(unknown))
        when = datetime_output(self.context)
        return [represent(row, lags[row.pk], when) for row in rows]


class ServerSerializer(serializers.ModelSerializer):
    """A server with its replay lag: from the context's `lags` (servers.lag.lags_of), else computed."""

    dataset = serializers.SlugRelatedField(slug_field="name", queryset=Dataset.objects.all())
    state = serializers.SerializerMethodField()
    pending_updates = serializers.SerializerMethodField()
    missing_updates = serializers.SerializerMethodField(
        help_text="updates it still needs that are gone from the bucket"
    )
    lag_seconds = serializers.SerializerMethodField()
    catch_up_seconds = serializers.SerializerMethodField(
        help_text="time to apply what is pending at the server's recent apply rate; null when unknown"
    )
    effective_time = serializers.SerializerMethodField()
    error = serializers.CharField(source="last_error", read_only=True)
    fingerprint = serializers.SerializerMethodField(
        help_text="the newest fingerprint reported: effective_time, mode, triples, hash"
    )
    divergence = serializers.SerializerMethodField(
        help_text="when diverged: the comparison, with each differing graph's triples and hash beside the reference's"
    )

    class Meta:
        model = Server
        fields = [
            "id",
            "name",
            "dataset",
            "agent_url",
            "enabled",
            "state",
            "ready",
            "ready_reason",
            "pending_updates",
            "lag_seconds",
            "catch_up_seconds",
            "effective_time",
            "last_report_at",
            "last_succeeded",
            "failed_key",
            "error",
            "late_keys",
            "missing_updates",
            "rebuild_requested_at",
            "unreachable_since",
            "created_at",
            "fingerprint",
            "divergence",
        ]
        read_only_fields = [f for f in fields if f not in ("name", "dataset", "agent_url")]
        list_serializer_class = ServerListSerializer

    def _lag(self, server: Server) -> Lag:
        lags = self.context.setdefault("lags", {})
        if server.pk not in lags:
            lags[server.pk] = lag_for(server)
        return lags[server.pk]

    def to_representation(self, server: Server) -> dict:
        return represent(server, self._lag(server), datetime_output(self.context))

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_fingerprint(self, server: Server) -> dict | None:
        return fingerprint_summary(server)

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_divergence(self, server: Server) -> dict | None:
        return server.divergence if server.diverged_ns is not None else None

    @extend_schema_field(OpenApiTypes.STR)
    def get_state(self, server: Server) -> str:
        return self._lag(server).state

    @extend_schema_field(OpenApiTypes.INT)
    def get_pending_updates(self, server: Server) -> int:
        return self._lag(server).pending_updates

    @extend_schema_field(OpenApiTypes.INT)
    def get_missing_updates(self, server: Server) -> int:
        return self._lag(server).missing_updates

    @extend_schema_field(OpenApiTypes.FLOAT)
    def get_lag_seconds(self, server: Server) -> float | None:
        return self._lag(server).lag_seconds

    @extend_schema_field(OpenApiTypes.FLOAT)
    def get_catch_up_seconds(self, server: Server) -> float | None:
        return self._lag(server).catch_up_seconds

    @extend_schema_field(OpenApiTypes.STR)
    def get_effective_time(self, server: Server) -> str | None:
        return iso(server.effective_ns)


class ServerRegisteredSerializer(ServerSerializer):
    """The answer to a registration: the server plus its two secrets, shown only this once."""

    token = serializers.CharField(read_only=True, help_text="API key the agent reports with")
    agent_token = serializers.CharField(read_only=True, help_text="bearer token the agent's serve requires")

    class Meta(ServerSerializer.Meta):
        fields = [*ServerSerializer.Meta.fields, "token", "agent_token"]
        read_only_fields = [*ServerSerializer.Meta.read_only_fields, "token", "agent_token"]


def _status_field(name: str, kind: str) -> serializers.Field:
    """The schema of one status.json field, from its type in dmsupdate.state.status.FIELD_TYPES."""
    if kind.startswith("list"):
        return serializers.ListField(child=serializers.JSONField(), required=False, help_text=kind)
    if kind.startswith("boolean"):
        return serializers.BooleanField(required=False, allow_null=True, help_text=kind)
    if "{" in kind or "object" in kind or kind.startswith("number"):
        return serializers.JSONField(required=False, allow_null=True, help_text=kind)
    return serializers.CharField(required=False, allow_null=True, allow_blank=True, help_text=kind)


# The agent's status.json, as the API schema shows it; reports are read by parse_status (extra
# fields are kept in the report's body).
StatusReportSerializer = type(
    "StatusReportSerializer",
    (serializers.Serializer,),
    {
        "__doc__": "The agent's status.json (DESIGN §5).",
        **{name: _status_field(name, kind) for name, kind in FIELD_TYPES.items()},
    },
)


class ReportAcceptedSerializer(serializers.Serializer):
    """What the control plane answers a report with: the lag it computed."""

    server = serializers.CharField()
    received_at = serializers.DateTimeField()
    pending_updates = serializers.IntegerField()
    lag_seconds = serializers.FloatField()
