"""The audit log in the admin: read-only, for everyone who may open it."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from backend.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_username", "action", "target_type", "target_id", "target_repr"]
    list_filter = ["action", "target_type"]
    search_fields = ["actor_username", "action", "target_repr", "target_id"]
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [field.name for field in AuditEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
