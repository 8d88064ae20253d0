"""JSON shapes of datasets, publications and registry objects (REST API v1)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from dmsupdate.api_datetimes import datetime_output
from dmsupdate.state.keys import GRAPH_OPS, iso
from dmsupdate.state.stores import StoreError, open_store
from publications.models import Dataset, PublicationEvent, StateObject


class DatasetSerializer(serializers.ModelSerializer):
    """A dataset and its state root; `POST` (operators) creates one."""

    class Meta:
        model = Dataset
        fields = ["id", "name", "s3root", "s3endpoint", "description", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_s3root(self, value: str) -> str:
        if value.startswith("file://") and not value.startswith("file:///"):
            raise serializers.ValidationError("a directory root is file:///ABSOLUTE/PATH (three slashes)")
        try:
            open_store(value, None)
        except (StoreError, ValueError) as exc:
            raise serializers.ValidationError(str(exc) or "not a state root URL") from exc
        return value.rstrip("/")


class PublicationSerializer(serializers.ModelSerializer):
    """A publication as answered by `POST /publications/` and replayed for its Idempotency-Key."""

    dataset = serializers.SlugRelatedField(slug_field="name", read_only=True)
    label = serializers.CharField(source="source", read_only=True)
    graph = serializers.SerializerMethodField()
    component = serializers.SerializerMethodField()
    format = serializers.SerializerMethodField()
    effective_time = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()
    etag = serializers.SerializerMethodField()
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = PublicationEvent
        fields = [
            "id",
            "dataset",
            "key",
            "op",
            "label",
            "graph",
            "component",
            "format",
            "effective_time",
            "effective_ns",
            "size",
            "sha256",
            "etag",
            "s3_url",
            "state",
            "uploaded",
            "actor",
            "created_at",
            "tags",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_graph(self, event: PublicationEvent) -> str | None:
        return event.object.arg if event.object and event.op in GRAPH_OPS else None

    @extend_schema_field(OpenApiTypes.STR)
    def get_component(self, event: PublicationEvent) -> str | None:
        return event.object.arg if event.object and event.op == "postproc" else None

    @extend_schema_field(OpenApiTypes.STR)
    def get_format(self, event: PublicationEvent) -> str | None:
        return (event.object.format or None) if event.object else None

    @extend_schema_field(OpenApiTypes.STR)
    def get_effective_time(self, event: PublicationEvent) -> str | None:
        return iso(event.effective_ns)

    @extend_schema_field(OpenApiTypes.STR)
    def get_state(self, event: PublicationEvent) -> str | None:
        return event.object.state if event.object else None

    @extend_schema_field(OpenApiTypes.STR)
    def get_etag(self, event: PublicationEvent) -> str | None:
        return (event.object.etag or None) if event.object else None


class ServerApplication(serializers.Serializer):
    """Whether one server of the dataset has applied a publication."""

    name = serializers.CharField()
    applied = serializers.BooleanField()
    effective_time = serializers.CharField(allow_null=True)
    state = serializers.CharField()


class PublicationDetailSerializer(PublicationSerializer):
    """A publication with "applied on k of N" (enabled servers), and every server of its dataset with its state."""

    servers = serializers.SerializerMethodField()
    applied_on = serializers.SerializerMethodField()
    servers_total = serializers.SerializerMethodField()

    class Meta(PublicationSerializer.Meta):
        fields = [*PublicationSerializer.Meta.fields, "applied_on", "servers_total", "servers"]
        read_only_fields = fields

    def _servers(self, event: PublicationEvent) -> list[dict]:
        return [
            {
                "name": replica.name,
                "applied": replica.has_applied(event.effective_ns),
                "effective_time": iso(replica.effective_ns),
                "state": replica.state,
            }
            for replica in self.context.get("replicas", [])
        ]

    @extend_schema_field(ServerApplication(many=True))
    def get_servers(self, event: PublicationEvent) -> list[dict]:
        return self._servers(event)

    @extend_schema_field(OpenApiTypes.INT)
    def get_applied_on(self, event: PublicationEvent) -> int:
        """Enabled servers that applied it (publications.replicas.applied_on)."""
        return self.context["applied_on"].applied

    @extend_schema_field(OpenApiTypes.INT)
    def get_servers_total(self, event: PublicationEvent) -> int:
        """Enabled servers of the dataset."""
        return self.context["applied_on"].total


class UploadRequestSerializer(serializers.Serializer):
    """The parameters of an upload (multipart fields, or the query string with a raw body)."""

    dataset = serializers.CharField()
    op = serializers.CharField(help_text="add | replace | drop | update | postproc")
    label = serializers.CharField(help_text="the publishing system: [A-Za-z0-9][A-Za-z0-9-]{0,63}")
    graph = serializers.CharField(required=False, help_text="graph URI (add, replace, drop)")
    component = serializers.CharField(required=False, help_text="component name (postproc)")
    format = serializers.CharField(
        required=False, help_text="ttl, nt, nq, rdf, ru, each optionally .gz; else inferred"
    )
    tags = serializers.CharField(
        required=False, help_text="comma-separated tags, each [a-z0-9][a-z0-9._-]{0,63}"
    )
    file = serializers.FileField(required=False, help_text="the content (or send it as the raw body)")


class RecordRequestSerializer(serializers.Serializer):
    """Record an object the publisher already put under the dataset's root."""

    dataset = serializers.CharField()
    s3_url = serializers.CharField(help_text="the object's full URL under the dataset's root")
    size = serializers.IntegerField(required=False, min_value=0, help_text="checked against HEAD")
    md5 = serializers.RegexField(r"^[0-9a-fA-F]{32}$", required=False, help_text="checked against the ETag")
    sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False, help_text="recorded as given")
    tags = serializers.JSONField(required=False, help_text="a list of tags (or one comma-separated string)")


class TagsRequestSerializer(serializers.Serializer):
    """The tags a publisher gives a publication (they replace the ones given before; date tags stay)."""

    tags = serializers.JSONField(help_text="a list of tags, each [a-z0-9][a-z0-9._-]{0,63}")


class StateObjectSerializer(serializers.ModelSerializer):
    """One key under a dataset's root, as the registry knows it."""

    dataset = serializers.SlugRelatedField(slug_field="name", read_only=True)
    effective_time = serializers.SerializerMethodField()
    graph = serializers.SerializerMethodField()
    component = serializers.SerializerMethodField()
    last_seen = serializers.DateTimeField(source="seen_at", read_only=True)
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = StateObject
        fields = [
            "id",
            "dataset",
            "key",
            "kind",
            "op",
            "label",
            "effective_time",
            "effective_ns",
            "graph",
            "component",
            "format",
            "size",
            "etag",
            "sha256",
            "state",
            "error",
            "first_seen",
            "last_seen",
            "state_changed_at",
            "tags",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_effective_time(self, obj: StateObject) -> str | None:
        return iso(obj.effective_ns)

    @extend_schema_field(OpenApiTypes.STR)
    def get_graph(self, obj: StateObject) -> str | None:
        return (obj.arg or None) if obj.op in GRAPH_OPS else None

    @extend_schema_field(OpenApiTypes.STR)
    def get_component(self, obj: StateObject) -> str | None:
        return (obj.arg or None) if obj.op == "postproc" else None

    def to_representation(self, obj: StateObject) -> dict:
        """Meta.fields built directly: a page of the registry is 50 to 1,000 rows, and DRF's
        field-by-field walk cost more than the queries behind it."""
        when = datetime_output(self.context)
        return {
            "id": obj.pk,
            "dataset": obj.dataset.name,
            "key": obj.key,
            "kind": obj.kind,
            "op": obj.op,
            "label": obj.label,
            "effective_time": iso(obj.effective_ns),
            "effective_ns": obj.effective_ns,
            "graph": self.get_graph(obj),
            "component": self.get_component(obj),
            "format": obj.format,
            "size": obj.size,
            "etag": obj.etag,
            "sha256": obj.sha256,
            "state": obj.state,
            "error": obj.error,
            "first_seen": when(obj.first_seen),
            "last_seen": when(obj.seen_at),
            "state_changed_at": when(obj.state_changed_at),
            "tags": list(obj.tags),
        }
