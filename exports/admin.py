from django.contrib import admin

from exports.models import ExportRun, ExternalPreference


@admin.register(ExportRun)
class ExportRunAdmin(admin.ModelAdmin):
    """Export runs are immutable: the admin shows them; the API and `manage.py export` create them."""

    list_display = ["id", "status", "granularity", "margin_scheme", "mix", "rows_written", "created_by", "created_at"]
    list_filter = ["status", "mix", "granularity"]
    readonly_fields = [field.name for field in ExportRun._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(ExternalPreference)
class ExternalPreferenceAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "harmless", "imported_at"]
    list_filter = ["source", "harmless"]
