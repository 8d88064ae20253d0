from django.contrib import admin

from accounts.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "role", "prefix", "server", "created_at", "last_used_at", "revoked_at")
    list_filter = ("role",)
    exclude = ("key_hash",)
    readonly_fields = ("prefix", "created_at", "last_used_at")
