from django.contrib import admin

from publications.models import Dataset, PublicationEvent, StateObject


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "s3root", "last_sync_at", "gc_keep_images", "gc_grace_hours")
    search_fields = ("name", "s3root")
    readonly_fields = (
        "sync_cursor",
        "last_sync_at",
        "last_full_sync_at",
        "last_sync_error",
        "last_effective_ns",
    )


@admin.register(StateObject)
class StateObjectAdmin(admin.ModelAdmin):
    list_display = ("key", "dataset", "kind", "op", "label", "effective_at", "size", "state")
    list_filter = ("dataset", "kind", "state", "op")
    search_fields = ("key", "label", "arg")
    list_select_related = ("dataset",)
    show_full_result_count = False


@admin.register(PublicationEvent)
class PublicationEventAdmin(admin.ModelAdmin):
    list_display = ("key", "dataset", "source", "op", "actor", "created_at")
    list_filter = ("dataset", "op", "source")
    search_fields = ("key", "source", "actor", "idempotency_key")
    list_select_related = ("dataset",)
