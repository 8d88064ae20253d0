"""The webhooks page: every webhook, adding and removing them, and the outcome of recent deliveries."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect

from accounts.access import operator_action, operator_required, page
from audit.services import actor_name, record
from dmsupdate.web import int_param, text_param
from notifications.api.serializers import WebhookSerializer
from notifications.models import Delivery, DeliveryStatus, EventKind, Webhook
from publications.models import Dataset

RECENT = 100


@operator_required
def webhooks_page(request: HttpRequest) -> HttpResponse:
    """Webhooks and the newest deliveries (filtered by webhook and outcome)."""
    hooks = list(Webhook.objects.select_related("dataset").order_by("pk"))
    deliveries = Delivery.objects.select_related("event", "webhook").order_by("-pk")
    hook_id = int_param(request.GET.get("webhook"))
    outcome = text_param(request.GET, "status", 16)
    if hook_id:
        deliveries = deliveries.filter(webhook_id=hook_id)
    if outcome in DeliveryStatus.values:
        deliveries = deliveries.filter(status=outcome)
    return page(
        request,
        "notifications/webhooks.html",
        {
            "hooks": hooks,
            "deliveries": list(deliveries[:RECENT]),
            "datasets": Dataset.objects.order_by("name").values_list("name", flat=True),
            "kinds": EventKind.values,
            "statuses": DeliveryStatus.values,
            "filters": {"webhook": hook_id or "", "status": outcome},
            "secret": request.session.pop("webhook_secret", None),
        },
    )


@operator_action
def webhook_add(request: HttpRequest) -> HttpResponse:
    data = {
        "url": request.POST.get("url", ""),
        "dataset": request.POST.get("dataset") or None,
        "events": request.POST.getlist("events"),
        "description": request.POST.get("description", ""),
    }
    serializer = WebhookSerializer(data=data)
    if not serializer.is_valid():
        problems = "; ".join(
            f"{field}: {' '.join(map(str, errs))}" for field, errs in serializer.errors.items()
        )
        messages.error(request, f"Webhook not added: {problems}")
        return redirect("webhooks")
    hook = serializer.save(created_by=request.user)
    record(
        actor_name(request.user),
        "webhook.created",
        hook.dataset.name if hook.dataset else "*",
        {"url": hook.url},
    )
    request.session["webhook_secret"] = {"id": hook.pk, "secret": hook.secret}
    return redirect("webhooks")


@operator_action
def webhook_delete(request: HttpRequest, pk: int) -> HttpResponse:
    hook = get_object_or_404(Webhook, pk=pk)
    record(
        actor_name(request.user),
        "webhook.deleted",
        hook.dataset.name if hook.dataset else "*",
        {"url": hook.url},
    )
    hook.delete()
    return redirect("webhooks")
