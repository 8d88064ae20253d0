"""JSON shapes of webhooks and their deliveries (REST API v1)."""

from __future__ import annotations

from rest_framework import serializers

from notifications.models import Delivery, EventKind, Webhook
from publications.models import Dataset


class WebhookSerializer(serializers.ModelSerializer):
    """A webhook; its `secret` is shown in the answer that creates it, never again."""

    dataset = serializers.SlugRelatedField(
        slug_field="name", queryset=Dataset.objects.all(), allow_null=True, required=False
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventKind.choices),
        required=False,
        help_text="empty: every event",
    )

    class Meta:
        model = Webhook
        fields = ["id", "dataset", "url", "events", "enabled", "description", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_url(self, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise serializers.ValidationError("a webhook URL is http:// or https://")
        return value


class CreatedWebhookSerializer(WebhookSerializer):
    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = [*WebhookSerializer.Meta.read_only_fields, "secret"]


class DeliverySerializer(serializers.ModelSerializer):
    """One event for one webhook, and how its delivery went."""

    event = serializers.CharField(source="event.kind", read_only=True)
    event_id = serializers.IntegerField(read_only=True)
    subject = serializers.CharField(source="event.subject", read_only=True)
    data = serializers.JSONField(source="event.data", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "webhook",
            "event_id",
            "event",
            "subject",
            "data",
            "status",
            "attempts",
            "response_status",
            "error",
            "last_attempt_at",
            "next_attempt_at",
            "delivered_at",
            "created_at",
        ]
        read_only_fields = fields
