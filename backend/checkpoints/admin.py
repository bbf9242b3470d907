"""The registry and training runs in the admin; researchers start a reward-model run from its add form."""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from backend.checkpoints.models import Checkpoint, TrainingRun
from backend.checkpoints.tasks import enqueue_training_run
from backend.checkpoints.training_runs import training_run_check, training_run_create
from backend.errors import ServiceError


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "parent", "produced_by", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "path", "produced_by"]
    raw_id_fields = ["parent", "created_by"]
    readonly_fields = ["created_at"]


class TrainingRunCreateForm(forms.ModelForm):
    config = forms.JSONField(required=False, initial=dict, help_text='e.g. {"batch_size": 64, "learning_rate": 1e-5}')

    class Meta:
        model = TrainingRun
        fields = ["kind", "export", "base_checkpoint", "builtin_backbone", "config"]

    def options(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "kind": data.get("kind") or "",
            "export_id": data["export"].pk if data.get("export") else 0,
            "base_checkpoint_id": data["base_checkpoint"].pk if data.get("base_checkpoint") else None,
            "builtin_backbone": data.get("builtin_backbone") or "",
            "config": data.get("config") or {},
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            training_run_check(**self.options())
        except ServiceError as error:
            field = {"backbone": "builtin_backbone"}.get(error.field or "", error.field)
            self.add_error(field if field in self.fields else None, error.message)
        return data


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "step", "total_steps", "export", "output_checkpoint", "created_at"]
    list_filter = ["kind", "status"]

    def get_form(
        self, request: HttpRequest, obj: TrainingRun | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = TrainingRunCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: TrainingRun | None = None) -> Any:
        return [field.name for field in TrainingRun._meta.fields] if obj else []

    def save_model(self, request: HttpRequest, obj: TrainingRun, form: Any, change: bool) -> None:
        run, _ = training_run_create(created_by=request.user, enqueue=enqueue_training_run, **form.options())  # type: ignore[arg-type]
        obj.pk, obj._state.adding = run.pk, False

    def has_change_permission(self, request: HttpRequest, obj: TrainingRun | None = None) -> bool:
        return False
