"""Django admin for prompts, batches and their work; batch state changes go through the services."""

from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from backend.batches.models import (
    Annotation,
    Assignment,
    Batch,
    Comparison,
    Dialogue,
    GoldComparison,
    GoldReview,
    LivePair,
    Prompt,
    Turn,
)
from backend.batches.services.batches import batch_close, batch_open
from backend.batches.services.comparisons import ResponseInput
from backend.batches.services.gold import gold_comparison_create, gold_review_clear, gold_reviews_refresh
from backend.checkpoints.models import Checkpoint, CheckpointKind
from backend.errors import ServiceError
from preference_format import SafetyLabel, choices


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
    list_display = [
        "name",
        "iso_week",
        "focus",
        "status",
        "target_comparisons",
        "overlap",
        "gold_rate",
        "selection",
        "opens_at",
        "closes_at",
    ]
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


@admin.register(LivePair)
class LivePairAdmin(admin.ModelAdmin):
    """Pairs sampled for annotators' own prompts. A failure's error is shown here whole (checkpoint, path,
    reason); its author was told only a generic reason."""

    list_display = ["id", "batch", "requested_by", "status", "short_error", "created_at", "finished_at"]
    list_filter = ["status", "batch"]
    search_fields = ["error"]
    raw_id_fields = ["batch", "prompt", "requested_by", "comparison", "assignment"]
    readonly_fields = ["status", "error", "comparison", "assignment", "created_at", "finished_at"]

    @admin.display(description="error")
    def short_error(self, live_pair: LivePair) -> str:
        return live_pair.error[:200]

    # The sampler's record: annotators ask for live pairs, admins may look, not make or rewrite them.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LivePair | None = None) -> bool:
        return False


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "comparison", "annotator", "choice", "strength", "safety_label", "skip_reason", "created_at"]
    list_filter = ["strength", "safety_label", "skip_reason"]
    raw_id_fields = ["assignment", "annotator", "comparison", "chosen_response", "rejected_response"]
    readonly_fields = ["created_at"]

    def has_change_permission(self, request: HttpRequest, obj: Annotation | None = None) -> bool:
        # Judgements are evidence: admins may look, not rewrite.
        return False


class GoldComparisonForm(forms.ModelForm):
    """Add a gold comparison: the prompt, two responses from a policy checkpoint, and the right answer."""

    prompt_text = forms.CharField(label="Prompt", widget=forms.Textarea)
    first_text = forms.CharField(label="First response", widget=forms.Textarea, strip=False)
    second_text = forms.CharField(label="Second response", widget=forms.Textarea, strip=False)
    checkpoint = forms.ModelChoiceField(
        queryset=Checkpoint.objects.filter(kind=CheckpointKind.POLICY), help_text="The policy the responses are from."
    )
    better = forms.ChoiceField(choices=[("first", "First response"), ("second", "Second response")])
    safety_label = forms.ChoiceField(choices=[("", "(not checked)"), *choices(SafetyLabel)], required=False)

    current_user: Any = None  # set by the admin for the request

    class Meta:
        model = GoldComparison
        fields = ["batch"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        response = partial(ResponseInput, checkpoint=data["checkpoint"], temperature=0.0)
        try:
            self.created, _ = gold_comparison_create(
                batch=data["batch"],
                prompt_text=data["prompt_text"],
                first=response(text=data["first_text"]),
                second=response(text=data["second_text"]),
                better=data["better"],
                safety_label=data.get("safety_label") or "",
                created_by=self.current_user,
            )
        except ServiceError as error:
            field = error.field if error.field in {"better", "safety_label"} else None
            raise forms.ValidationError({field: error.message} if field else error.message) from error
        return data


@admin.register(GoldComparison)
class GoldComparisonAdmin(admin.ModelAdmin):
    list_display = ["id", "batch", "prompt", "better_side", "expected_safety_label", "annotation_count", "created_at"]
    list_filter = ["batch"]
    form = GoldComparisonForm

    def get_queryset(self, request: HttpRequest) -> "QuerySet[GoldComparison]":
        return super().get_queryset(request).filter(is_gold=True).select_related("gold_answer", "prompt", "batch")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.current_user = request.user  # type: ignore[attr-defined]
        return form

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a gold item with answers is evidence: add a new one instead

    def save_model(self, request: HttpRequest, obj: GoldComparison, form: Any, change: bool) -> None:
        obj.pk = form.created.pk  # the service stored it while validating the form

    @admin.display(description="better")
    def better_side(self, comparison: GoldComparison) -> str:
        return "first" if comparison.gold_answer.better_response_id == comparison.first_response_id else "second"

    @admin.display(description="expected safety label")
    def expected_safety_label(self, comparison: GoldComparison) -> str:
        return comparison.gold_answer.safety_label or "-"


@admin.register(GoldReview)
class GoldReviewAdmin(admin.ModelAdmin):
    list_display = ["annotator", "flagged", "accuracy_shown", "answered", "flagged_at", "cleared_at", "cleared_by"]
    list_filter = ["flagged"]
    readonly_fields = ["annotator", "answered", "correct", "flagged", "flagged_at", "cleared_at", "cleared_by"]
    actions = ["clear_flags", "refresh_flags"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="gold accuracy")
    def accuracy_shown(self, review: GoldReview) -> str:
        return "-" if review.accuracy is None else f"{review.accuracy:.0%}"

    @admin.action(description="Clear the flag (reviewed; accuracy counts afresh)")
    def clear_flags(self, request: HttpRequest, queryset: "QuerySet[GoldReview]") -> None:
        for review in queryset.select_related("annotator"):
            gold_review_clear(annotator=review.annotator, cleared_by=request.user)  # type: ignore[arg-type]
        self.message_user(request, f"Cleared {queryset.count()} review(s).", level=messages.SUCCESS)

    @admin.action(description="Recount gold accuracy of everyone now")
    def refresh_flags(self, request: HttpRequest, queryset: "QuerySet[GoldReview]") -> None:
        result = gold_reviews_refresh()
        self.message_user(request, f"{result['flagged']} of {result['annotators']} annotators flagged.")
