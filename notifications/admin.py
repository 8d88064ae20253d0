from django.contrib import admin

from notifications.models import Delivery, Event, Webhook


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ("url", "dataset", "events", "enabled", "created_at")
    list_filter = ("enabled", "dataset")
    search_fields = ("url", "description")
    exclude = ("secret",)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("kind", "subject", "dataset", "created_at")
    list_filter = ("kind", "dataset")
    readonly_fields = ("kind", "subject", "dataset", "data", "created_at")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "event",
        "webhook",
        "status",
        "attempts",
        "response_status",
        "last_attempt_at",
        "delivered_at",
    )
    list_filter = ("status",)
    list_select_related = ("event", "webhook")
    readonly_fields = [f.name for f in Delivery._meta.fields]
