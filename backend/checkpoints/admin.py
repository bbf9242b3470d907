from django.contrib import admin

from backend.checkpoints.models import Checkpoint, TrainingRun


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "parent", "produced_by", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "path", "produced_by"]
    raw_id_fields = ["parent", "created_by"]
    readonly_fields = ["created_at"]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    """Runs are started through the API or `manage.py train_reward_model`; the admin shows them."""

    list_display = ["id", "kind", "status", "step", "total_steps", "export", "output_checkpoint", "created_at"]
    list_filter = ["kind", "status"]
    readonly_fields = [field.name for field in TrainingRun._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False
