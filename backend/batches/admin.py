"""Django admin for prompts, batches and their work; batch state changes go through the services."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from backend.batches.models import (
    Annotation,
    Assignment,
    Batch,
    Comparison,
    Dialogue,
    Prompt,
    Turn,
)
from backend.batches.services.batches import batch_close, batch_open
from backend.errors import ServiceError


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "short_text", "source", "is_safety", "is_adversarial", "author", "created_at"]
    list_filter = ["source", "is_safety", "is_adversarial"]
    search_fields = ["text"]
    raw_id_fields = ["author", "dialogue"]
    readonly_fields = ["created_at"]

    @admin.display(description="text")
    def short_text(self, prompt: Prompt) -> str:
        return prompt.text[:80]


class TurnInline(admin.TabularInline):
    model = Turn
    extra = 0


@admin.register(Dialogue)
class DialogueAdmin(admin.ModelAdmin):
    list_display = ["id", "created_by", "created_at"]
    inlines = [TurnInline]
    raw_id_fields = ["created_by"]


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ["name", "iso_week", "focus", "status", "target_comparisons", "overlap", "opens_at", "closes_at"]
    list_filter = ["status", "focus", "iso_week"]
    search_fields = ["name"]
    filter_horizontal = ["checkpoints"]
    readonly_fields = ["status", "created_by", "created_at", "opened_at", "closed_at"]
    actions = ["open_batches", "close_batches"]

    def save_model(self, request: HttpRequest, obj: Batch, form: object, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    def _apply(self, request: HttpRequest, queryset: "QuerySet[Batch]", service: object, verb: str) -> None:
        done = 0
        for batch in queryset:
            try:
                service(batch=batch, actor=request.user)  # type: ignore[operator]
                done += 1
            except ServiceError as error:
                self.message_user(request, f"{batch.name}: {error.message}", level=messages.ERROR)
        if done:
            self.message_user(request, f"{verb} {done} batch(es).", level=messages.SUCCESS)

    @admin.action(description="Open the selected batches (fixes their held-out sets)")
    def open_batches(self, request: HttpRequest, queryset: "QuerySet[Batch]") -> None:
        self._apply(request, queryset, batch_open, "Opened")

    @admin.action(description="Close the selected batches")
    def close_batches(self, request: HttpRequest, queryset: "QuerySet[Batch]") -> None:
        self._apply(request, queryset, batch_close, "Closed")


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = ["id", "batch", "prompt", "is_held_out", "annotation_count", "created_at"]
    list_filter = ["batch", "is_held_out"]
    raw_id_fields = ["batch", "prompt", "first_response", "second_response"]
    readonly_fields = ["annotation_count", "created_at"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "comparison", "annotator", "status", "swap", "leased_at", "expires_at"]
    list_filter = ["status"]
    raw_id_fields = ["comparison", "annotator"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "comparison", "annotator", "choice", "strength", "safety_label", "skip_reason", "created_at"]
    list_filter = ["strength", "safety_label", "skip_reason"]
    raw_id_fields = ["assignment", "annotator", "comparison", "chosen_response", "rejected_response"]
    readonly_fields = ["created_at"]

    def has_change_permission(self, request: HttpRequest, obj: Annotation | None = None) -> bool:
        # Judgements are evidence: admins may look, not rewrite.
        return False
