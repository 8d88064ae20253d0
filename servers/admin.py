from django.contrib import admin

from servers.models import Server, StatusReport, UpdateRun


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "dataset",
        "enabled",
        "agent_url",
        "last_report_at",
        "last_succeeded",
        "failed_key",
    )
    list_filter = ("dataset", "enabled")
    search_fields = ("name", "agent_url")
    exclude = ("agent_token",)


@admin.register(StatusReport)
class StatusReportAdmin(admin.ModelAdmin):
    list_display = ("server", "received_at", "succeeded", "applied", "pending_updates", "lag_seconds")
    list_filter = ("server__dataset",)
    list_select_related = ("server",)


@admin.register(UpdateRun)
class UpdateRunAdmin(admin.ModelAdmin):
    list_display = ("server", "kind", "trigger", "result", "ops_applied", "started_at", "finished_at")
    list_filter = ("kind", "result", "trigger")
    list_select_related = ("server",)
