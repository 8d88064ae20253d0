from django.contrib import admin

from dmsupdate.errors import Invalid
from publications.models import Dataset, PublicationEvent, StateObject
from publications.tags import filter_by_tags


class TagFilter(admin.SimpleListFilter):
    """`?tags_all=a,b` in the admin's lists (the GIN index answers it)."""

    title = "tags (all of)"
    parameter_name = "tags_all"

    def lookups(self, request, model_admin):
        return []

    def has_output(self) -> bool:
        return True

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "any",
        }

    def queryset(self, request, queryset):
        try:
            return filter_by_tags(queryset, all_of=self.value() or "")
        except Invalid:
            return queryset.none()


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
    list_display = ("key", "dataset", "kind", "op", "label", "effective_at", "size", "state", "tag_list")
    list_filter = ("dataset", "kind", "state", "op", TagFilter)
    search_fields = ("key", "label", "arg")

    @admin.display(description="tags")
    def tag_list(self, obj: StateObject) -> str:
        return ", ".join(obj.tags)

    list_select_related = ("dataset",)
    show_full_result_count = False


@admin.register(PublicationEvent)
class PublicationEventAdmin(admin.ModelAdmin):
    list_display = ("key", "dataset", "source", "op", "actor", "created_at", "tag_list")
    list_filter = ("dataset", "op", "source", TagFilter)

    @admin.display(description="tags")
    def tag_list(self, event: PublicationEvent) -> str:
        return ", ".join(event.tags)

    search_fields = ("key", "source", "actor", "idempotency_key")
    list_select_related = ("dataset",)
