"""Export runs in the admin: researchers start one from the add form (through the service); runs are immutable."""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from backend.errors import InvalidInput
from exports.models import ExportRun, ExternalPreference
from exports.services import export_create, export_options_check
from exports.stats import WHITESPACE
from exports.tasks import enqueue_export
from exports.writers import FORMATS
from preference_format import MARGIN_SCHEME_NAMES

OPTIONS = ("filters", "formats", "granularity", "margin_scheme", "mix", "tokenizer")


def options_of(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in OPTIONS if data.get(key) is not None}


class ExportRunCreateForm(forms.ModelForm):
    filters = forms.JSONField(
        required=False, initial=dict, help_text='e.g. {"batches": [1, 2], "focus": "safety", "drop_unsure": true}'
    )
    formats = forms.MultipleChoiceField(choices=[(f, f) for f in FORMATS], initial=list(FORMATS))
    margin_scheme = forms.ChoiceField(choices=[(m, m) for m in MARGIN_SCHEME_NAMES], initial="none")
    tokenizer = forms.CharField(initial=WHITESPACE, help_text="'whitespace' or a tokenizer directory.")

    class Meta:
        model = ExportRun
        fields = ["filters", "formats", "granularity", "margin_scheme", "mix", "seed"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            export_options_check(**options_of(data))
        except InvalidInput as error:
            field = (error.field or "").split(".")[0]
            self.add_error(field if field in self.fields else None, error.message)
        return data


@admin.register(ExportRun)
class ExportRunAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "granularity", "margin_scheme", "mix", "rows_written", "created_by", "created_at"]
    list_filter = ["status", "mix", "granularity"]

    def get_form(self, request: HttpRequest, obj: ExportRun | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ExportRunCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: ExportRun | None = None) -> Any:
        return [field.name for field in ExportRun._meta.fields] if obj else []

    def save_model(self, request: HttpRequest, obj: ExportRun, form: Any, change: bool) -> None:
        data = form.cleaned_data
        run, _ = export_create(
            created_by=request.user,  # type: ignore[arg-type]
            enqueue=enqueue_export,
            seed=data.get("seed") or 0,
            **options_of(data),
        )
        obj.pk, obj._state.adding = run.pk, False

    def has_change_permission(self, request: HttpRequest, obj: ExportRun | None = None) -> bool:
        return False


@admin.register(ExternalPreference)
class ExternalPreferenceAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "harmless", "imported_at"]
    list_filter = ["source", "harmless"]
