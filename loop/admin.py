"""The loop in the admin: the checkpoint registry (a policy's page shows its temperature scans; researchers start
one with an action), training runs (researchers start a reward-model run from its add form), iterations and batch
templates (an action sets their temperatures from a scan), all started and changed through the same services as
the API."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from backend.accounts.roles import Role, user_has_role
from backend.checkpoints.models import Checkpoint, CheckpointKind, TrainingRun
from backend.errors import ServiceError
from loop.models import BatchTemplate, Iteration, Method, TemperatureScan
from loop.selectors import iteration_plots, iteration_progress, iteration_report, temperature_scans_of
from loop.services.iterations import iteration_check, iteration_create, iteration_retry
from loop.services.temperature_scans import temperature_scan_create, template_temperatures_from_scan
from loop.services.templates import template_check, template_create, template_update
from loop.services.training_runs import training_run_check, training_run_create
from loop.tasks import enqueue_iteration, enqueue_temperature_scan, enqueue_training_run


def _scan_html(scan: TemperatureScan) -> str:
    """One scan on a page: its state, best temperature, and the curve once it is drawn."""
    best = f"{scan.best_temperature:g}" if scan.best_temperature is not None else "-"
    head = format_html(
        '<a href="{}">scan {}</a>: {} ({}), best temperature {}{}',
        reverse("admin:loop_temperaturescan_change", args=[scan.pk]),
        scan.pk,
        scan.status,
        f"{scan.progress:.0%}",
        best,
        f"; {scan.error}" if scan.error else "",
    )
    if scan.status != TemperatureScan.Status.DONE:
        return format_html("<p>{}</p>", head)
    plot = reverse("temperature-scan-plot", kwargs={"scan_id": scan.pk})
    return format_html('<p>{}<br><img src="{}" style="max-width: 720px"></p>', head, plot)


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "parent", "produced_by", "serving_url", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "path", "produced_by", "serving_url"]
    raw_id_fields = ["parent", "created_by"]
    readonly_fields = ["created_at", "temperature_scans"]
    actions = ["scan_temperatures"]

    @admin.display(description="temperature scans (max reward among N samples, per temperature)")
    def temperature_scans(self, obj: Checkpoint) -> str:
        if obj.pk is None or obj.kind != CheckpointKind.POLICY:
            return "-"
        scans = temperature_scans_of(checkpoint=obj)
        return format_html_join("", "{}", ((_scan_html(scan),) for scan in scans)) or "none yet"

    def has_scan_permission(self, request: HttpRequest) -> bool:
        return user_has_role(request.user, Role.RESEARCHER)

    @admin.action(description="Scan sampling temperatures of the selected policies", permissions=["scan"])
    def scan_temperatures(self, request: HttpRequest, queryset: "QuerySet[Checkpoint]") -> None:
        """Default settings, the newest reward models and the newest iteration's prompts (the API takes others)."""
        for checkpoint in queryset:
            try:
                scan, _ = temperature_scan_create(
                    checkpoint_id=checkpoint.pk,
                    created_by=request.user,  # type: ignore[arg-type]
                    enqueue=enqueue_temperature_scan,
                )
            except ServiceError as error:
                messages.error(request, f"{checkpoint.name}: {error.message}")
            else:
                messages.info(request, f"{checkpoint.name}: temperature scan {scan.pk} queued.")


@admin.register(TemperatureScan)
class TemperatureScanAdmin(admin.ModelAdmin):
    list_display = ["id", "checkpoint", "status", "step", "total_steps", "best_temperature", "created_at"]
    list_filter = ["status"]

    def get_readonly_fields(self, request: HttpRequest, obj: TemperatureScan | None = None) -> Any:
        return ["curve", *(field.name for field in TemperatureScan._meta.fields)]

    @admin.display(description="curve")
    def curve(self, obj: TemperatureScan) -> str:
        return _scan_html(obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TemperatureScan | None = None) -> bool:
        return False


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


_FIELD_NAMES = {"batches": "batches", "export": "given_export", "reward_backbone": "reward_builtin_backbone"}


class IterationCreateForm(forms.ModelForm):
    methods = forms.MultipleChoiceField(choices=Method.choices, widget=forms.CheckboxSelectMultiple)
    config = forms.JSONField(required=False, initial=dict, help_text='e.g. {"ppo": {"iterations": 50}}')

    class Meta:
        model = Iteration
        fields = [
            "batches",
            "given_export",
            "base_policy",
            "methods",
            "reward_backbone",
            "reward_builtin_backbone",
            "evaluation_reward_models",
            "scan_temperatures",
        ]

    def options(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "base_policy_id": data["base_policy"].pk if data.get("base_policy") else 0,
            "methods": data.get("methods") or [],
            "batch_ids": [batch.pk for batch in data.get("batches") or []],
            "export_id": data["given_export"].pk if data.get("given_export") else None,
            "reward_backbone_id": data["reward_backbone"].pk if data.get("reward_backbone") else None,
            "reward_builtin_backbone": data.get("reward_builtin_backbone") or "",
            "config": data.get("config") or {},
            "evaluation_reward_model_ids": [checkpoint.pk for checkpoint in data.get("evaluation_reward_models") or []],
            "scan_temperatures": bool(data.get("scan_temperatures")),
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            iteration_check(**self.options())
        except ServiceError as error:
            field = (error.field or "").split(".")[0]
            field = _FIELD_NAMES.get(field, field)
            self.add_error(field if field in self.fields else None, error.message)
        return data


@admin.register(Iteration)
class IterationAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "step", "progress", "base_policy", "new_policy", "created_at"]
    list_filter = ["status", "step"]
    actions = ["retry"]

    def get_form(self, request: HttpRequest, obj: Iteration | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = IterationCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Iteration | None = None) -> Any:
        if obj is None:
            return []
        return ["progress", "report", "plots", *(field.name for field in Iteration._meta.fields)]

    def get_fields(self, request: HttpRequest, obj: Iteration | None = None) -> Any:
        if obj is None:
            return [*IterationCreateForm.Meta.fields, "config"]
        return ["progress", "report", "plots", *(f.name for f in Iteration._meta.fields if f.name != "id")]

    def save_model(self, request: HttpRequest, obj: Iteration, form: Any, change: bool) -> None:
        iteration, _ = iteration_create(created_by=request.user, enqueue=enqueue_iteration, **form.options())  # type: ignore[arg-type]
        obj.pk, obj._state.adding = iteration.pk, False

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """The service already stored the batches."""

    def has_change_permission(self, request: HttpRequest, obj: Iteration | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="progress")
    def progress(self, obj: Iteration) -> str:
        return f"{iteration_progress(iteration=obj):.0%}"

    @admin.display(description="report")
    def report(self, obj: Iteration) -> str:
        return format_html("<pre>{}</pre>", json.dumps(iteration_report(iteration=obj), indent=2))

    @admin.display(description="plots")
    def plots(self, obj: Iteration) -> str:
        return format_html_join(
            "",
            '<p>{}<br><img src="{}" style="max-width: 720px"></p>',
            (
                (name, reverse("iteration-plot", kwargs={"iteration_id": obj.pk, "name": name}))
                for name in sorted(iteration_plots(iteration=obj))
            ),
        )

    @admin.action(description="Retry the selected failed iterations")
    def retry(self, request: HttpRequest, queryset: "QuerySet[Iteration]") -> None:
        for iteration in queryset.filter(status=Iteration.Status.FAILED):
            iteration_retry(iteration=iteration, enqueue=enqueue_iteration, actor=request.user)  # type: ignore[arg-type]
        messages.info(request, "Failed iterations queued again from the step that failed.")


class BatchTemplateForm(forms.ModelForm):
    temperatures = forms.JSONField(initial=[0.7, 1.0], help_text="e.g. [0.7, 1.0]")
    prompt_tags = forms.JSONField(required=False, initial=list, help_text='With prompt source "tags", e.g. ["code"]')

    class Meta:
        model = BatchTemplate
        fields = [
            "name",
            "focus",
            "size",
            "overlap",
            "temperatures",
            "max_new_tokens",
            "guidelines",
            "prompt_source",
            "prompt_tags",
            "annotator_quota",
            "held_out_size",
            "active",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            template_check(data)
        except ServiceError as error:
            self.add_error(error.field if error.field in self.fields else None, error.message)
        return data


@admin.register(BatchTemplate)
class BatchTemplateAdmin(admin.ModelAdmin):
    form = BatchTemplateForm
    list_display = ["name", "focus", "size", "overlap", "temperatures", "prompt_source", "active"]
    list_filter = ["focus", "active"]
    actions = ["temperatures_from_scan"]

    @admin.action(
        description="Set temperatures to the two best of the newest policy's temperature scan", permissions=["change"]
    )
    def temperatures_from_scan(self, request: HttpRequest, queryset: "QuerySet[BatchTemplate]") -> None:
        for template in queryset:
            try:
                template = template_temperatures_from_scan(template=template, actor=request.user)  # type: ignore[arg-type]
            except ServiceError as error:
                messages.error(request, f"{template.name}: {error.message}")
            else:
                messages.info(request, f"{template.name}: temperatures now {template.temperatures}.")

    def save_model(self, request: HttpRequest, obj: BatchTemplate, form: Any, change: bool) -> None:
        values = {key: value for key, value in form.cleaned_data.items() if key != "id"}
        if change:
            template_update(template=BatchTemplate.objects.get(pk=obj.pk), actor=request.user, **values)  # type: ignore[arg-type]
        else:
            template, _ = template_create(created_by=request.user, **values)  # type: ignore[arg-type]
            obj.pk, obj._state.adding = template.pk, False
