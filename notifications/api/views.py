"""REST API v1: webhooks (operators register them per dataset) and the outcome of every delivery."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import OPERATORS, ApiViewSet, token_of
from audit.services import actor_name, record
from notifications.api.serializers import CreatedWebhookSerializer, DeliverySerializer, WebhookSerializer
from notifications.models import Delivery, DeliveryStatus, Webhook
from publications.api.pagination import BoundedCountPagination


def _describe(hook: Webhook) -> dict:
    return {"url": hook.url, "events": hook.events, "enabled": hook.enabled}


class WebhookViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    ApiViewSet,
):
    """Webhooks per dataset (or every dataset): `POST` answers with the signing secret, once."""

    roles = {
        name: OPERATORS
        for name in ("list", "retrieve", "create", "update", "partial_update", "destroy", "deliveries")
    }
    serializer_class = WebhookSerializer
    queryset = Webhook.objects.select_related("dataset").order_by("pk")

    def _actor(self) -> str:
        return actor_name(self.request.user, token_of(self.request))

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = WebhookSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        hook = serializer.save(created_by=request.user)
        record(self._actor(), "webhook.created", hook.dataset.name if hook.dataset else "*", _describe(hook))
        return Response(CreatedWebhookSerializer(hook).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        hook = serializer.save()
        record(self._actor(), "webhook.changed", hook.dataset.name if hook.dataset else "*", _describe(hook))

    def perform_destroy(self, instance: Webhook) -> None:
        record(
            self._actor(),
            "webhook.deleted",
            instance.dataset.name if instance.dataset else "*",
            _describe(instance),
        )
        instance.delete()

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=DeliveryStatus.values)],
        responses={200: DeliverySerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        """The webhook's deliveries, newest first, with each one's outcome."""
        hook = self.get_object()
        rows: QuerySet[Delivery] = (
            Delivery.objects.filter(webhook=hook).select_related("event").order_by("-pk")
        )
        wanted = request.query_params.get("status")
        if wanted in DeliveryStatus.values:
            rows = rows.filter(status=wanted)
        paginator = BoundedCountPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)
