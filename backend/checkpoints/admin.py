from django.contrib import admin

from backend.checkpoints.models import Checkpoint


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "parent", "produced_by", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "path", "produced_by"]
    raw_id_fields = ["parent", "created_by"]
    readonly_fields = ["created_at"]
