"""Prompts and dialogues, weekly batches, the response pairs shown to annotators, leases and judgements.

The Llama 2 protocol (section 3.2.1) in data: a Comparison pairs two Responses to one Prompt; an
Assignment is one annotator's lease on it, with the display order fixed by its swap flag; an
Annotation is the forced choice with its strength and, in safety batches, its safety label.
"""

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from backend.batches.words import whitespace_tokens
from backend.checkpoints.models import Checkpoint
from preference_format import FinishReason, Reproducibility, SafetyLabel, Strength, choices


class WordCountField(models.PositiveIntegerField):
    """The whitespace word count of another field of the same row (`len(text.split())`), set whenever the row is
    written through the ORM (save and bulk_create call `pre_save`).

    Exports report the Llama 2 Table 6 averages of every row they write; counting them from the text took a large
    share of an export's time. Stored, the count is read with the row. A write that bypasses `pre_save`
    (`QuerySet.update(text=...)`, or `save(update_fields=[...])` naming the text but not this field) leaves the
    count as it was: nothing in the code does either.
    """

    def __init__(self, *args: object, source: str = "text", **kwargs: object) -> None:
        self.source = source
        kwargs.setdefault("default", 0)
        kwargs.setdefault("editable", False)
        kwargs.setdefault("help_text", f"Whitespace-separated words in {source}, counted when the row is saved.")
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def deconstruct(self) -> tuple[str, str, Sequence[Any], dict[str, Any]]:
        name, path, args, kwargs = super().deconstruct()
        return name, path, args, {**kwargs, "source": self.source}

    def pre_save(self, model_instance: models.Model, add: bool) -> int:
        count = whitespace_tokens(getattr(model_instance, self.source))
        setattr(model_instance, self.attname, count)
        return count


class Focus(models.TextChoices):
    HELPFULNESS = "helpfulness", "Helpfulness"
    SAFETY = "safety", "Safety"


class Side(models.TextChoices):
    """A response as the annotator saw it: A on the left, B on the right."""

    A = "a", "Response A"
    B = "b", "Response B"


class SkipReason(models.TextChoices):
    BOTH_EMPTY = "both_empty", "Both responses are empty or broken"
    PROMPT_UNUSABLE = "prompt_unusable", "The prompt is unusable"
    IDENTICAL = "identical", "The responses are identical"
    NOT_MY_EXPERTISE = "not_my_expertise", "Outside my expertise"
    OTHER = "other", "Other (say why in the comment)"


class PromptSource(models.TextChoices):
    ANNOTATOR = "annotator", "Written by an annotator"
    POOL = "pool", "Imported prompt pool"
    DIALOGUE = "dialogue", "Next turn of a dialogue"
    GOLD = "gold", "Written for a gold comparison"


class Dialogue(models.Model):
    """A multi-turn conversation; its turns are the context that precedes a prompt."""

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    opening_prompt = models.ForeignKey(
        "Prompt",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The conversation's first user message: every later turn takes its held-out split.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Dialogue {self.pk}"


class Turn(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    dialogue = models.ForeignKey(Dialogue, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveIntegerField(help_text="0-based position in the dialogue.")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField()
    word_count = WordCountField(source="content")

    class Meta:
        ordering = ["dialogue", "index"]
        constraints = [models.UniqueConstraint(fields=["dialogue", "index"], name="turn_unique_index")]

    def __str__(self) -> str:
        return f"{self.dialogue_id}#{self.index} {self.role}"


class Prompt(models.Model):
    """The user message the two responses answer; `dialogue` (if any) holds the turns before it."""

    text = models.TextField()
    word_count = WordCountField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="prompts",
    )
    source = models.CharField(max_length=16, choices=PromptSource.choices, default=PromptSource.POOL)
    is_safety = models.BooleanField(default=False, help_text="Tagged safety: PPO scores it with the safety RM.")
    is_adversarial = models.BooleanField(default=False, help_text="Written to elicit unsafe behaviour.")
    tags = models.JSONField(default=list, blank=True, help_text="Further free-form tags (strings).")
    dialogue = models.ForeignKey(Dialogue, null=True, blank=True, on_delete=models.CASCADE, related_name="prompts")
    client_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="Client idempotency key: the same author and key create one prompt.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["author", "client_key"],
                condition=~Q(client_key=""),
                name="prompt_unique_client_key",
            )
        ]

    def __str__(self) -> str:
        return self.text[:60]


class Batch(models.Model):
    """A week's annotation work: what to sample, how much to collect, and when."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SAMPLING = "sampling", "Sampling"
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    class Selection(models.TextChoices):
        """How pre-sampling picks the pairs it keeps."""

        BALANCED = "balanced", "Balanced over the plan's variants"
        UNCERTAIN = "uncertain", "Smallest reward difference under a reward model"

    name = models.CharField(max_length=200, unique=True)
    iso_week = models.CharField(max_length=8, help_text="ISO week the batch belongs to, e.g. '2026-W48'.")
    focus = models.CharField(max_length=16, choices=Focus.choices, default=Focus.HELPFULNESS)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    checkpoints = models.ManyToManyField(
        Checkpoint,
        related_name="batches",
        blank=True,
        help_text="Policy checkpoints to sample from (latest and previous, per the protocol).",
    )
    temperatures = models.JSONField(default=list, help_text="Temperature grid for sampling, e.g. [0.7, 1.0].")
    top_p = models.FloatField(default=0.9)
    max_new_tokens = models.PositiveIntegerField(default=512)
    target_comparisons = models.PositiveIntegerField(help_text="How many comparisons to collect.")
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Annotators per comparison.")
    annotator_quota = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most judgements one annotator gives in this batch (empty: no limit)."
    )
    held_out_size = models.PositiveIntegerField(
        default=1000, help_text="Most comparisons this batch's test split takes; later ones go to train."
    )
    held_out_fraction = models.FloatField(
        default=0.1, help_text="Share of the batch's conversations held out as its test split (at most 0.5)."
    )
    opens_at = models.DateTimeField(null=True, blank=True)
    closes_at = models.DateTimeField(null=True, blank=True)
    guidelines = models.TextField(blank=True)
    annotators_write_prompts = models.BooleanField(
        default=False,
        help_text="Annotators write their own prompts and get a live-sampled pair (the Llama 2 protocol).",
    )
    gold_rate = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of leases that serve a gold comparison (when the batch has any), 0 to 0.5.",
    )
    selection = models.CharField(max_length=16, choices=Selection.choices, default=Selection.BALANCED)
    selection_checkpoint = models.ForeignKey(
        Checkpoint,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        limit_choices_to={"kind__in": ["reward_helpfulness", "reward_safety"]},
        help_text="The reward model that scores candidate pairs when selection is 'uncertain'.",
    )
    sampling_error = models.TextField(blank=True, help_text="Why sampling stopped, when it failed.")
    sampled_at = models.DateTimeField(null=True, blank=True, help_text="When pre-sampling reached the target.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "batches"
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="batch_overlap_positive"),
            models.CheckConstraint(
                condition=Q(opens_at__isnull=True) | Q(closes_at__isnull=True) | Q(closes_at__gt=models.F("opens_at")),
                name="batch_closes_after_opens",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Response(models.Model):
    """One sampled response with every parameter that produced it."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="responses")
    text = models.TextField(blank=True)
    word_count = WordCountField()
    temperature = models.FloatField()
    top_p = models.FloatField(default=1.0)
    seed = models.BigIntegerField(null=True, blank=True)
    max_new_tokens = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=16, choices=choices(FinishReason), default=FinishReason.STOP)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    engine = models.CharField(max_length=32, blank=True, help_text="transformers, vllm, openai, ...")
    engine_version = models.CharField(max_length=100, blank=True, help_text="e.g. 'vllm 0.13.0'.")
    device = models.CharField(max_length=200, blank=True, help_text="e.g. 'cuda:0 NVIDIA H200', or a server's URL.")
    dtype = models.CharField(max_length=16, blank=True)
    reproducibility = models.CharField(
        max_length=8,
        choices=choices(Reproducibility),
        default=Reproducibility.NONE,
        help_text="How far the seed reproduces the text on the same engine version and device.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Response {self.pk} to prompt {self.prompt_id}"


class Comparison(models.Model):
    """The pair shown to annotators. `first`/`second` are storage order; assignments decide A/B."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="comparisons")
    first_response = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    second_response = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    is_held_out = models.BooleanField(
        default=False, help_text="In the test split: decided when the pair is made, by its prompt's conversation."
    )
    annotation_count = models.PositiveIntegerField(
        default=0, help_text="Submitted (not skipped) annotations; kept in step under the row lock."
    )
    responses_identical = models.BooleanField(
        default=False, help_text="The two responses were identical even after one re-sample with a new seed."
    )
    is_gold = models.BooleanField(
        default=False, help_text="A quality-control item with a known answer: outside the target, never exported."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["batch", "annotation_count", "id"], name="comparison_lease_order")]
        constraints = [
            # One pair per prompt and batch: a redelivered sampling task or a retried add cannot duplicate it.
            models.UniqueConstraint(fields=["batch", "prompt"], name="comparison_once_per_prompt"),
            models.CheckConstraint(
                condition=~Q(first_response=models.F("second_response")), name="comparison_two_responses"
            ),
        ]

    def __str__(self) -> str:
        return f"Comparison {self.pk} ({self.batch_id})"


class Assignment(models.Model):
    """One annotator's lease on a comparison. `swap` shows the second response as A."""

    class Status(models.TextChoices):
        LEASED = "leased", "Leased"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    swap = models.BooleanField(help_text="True: Response A is the comparison's second response.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.LEASED)
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-leased_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["comparison", "annotator"], name="assignment_once_per_annotator")
        ]
        indexes = [
            models.Index(fields=["annotator", "status", "expires_at"], name="assignment_annotator_live"),
            models.Index(fields=["comparison", "status"], name="assignment_comparison_status"),
        ]

    def __str__(self) -> str:
        return f"Assignment {self.pk}: comparison {self.comparison_id} to {self.annotator_id}"


class Annotation(models.Model):
    """A judgement on an assignment: a forced choice with strength, or a skip with a reason."""

    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="annotation")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotations")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="annotations")
    choice = models.CharField(max_length=1, choices=Side.choices, blank=True, help_text="The side as displayed.")
    chosen_response = models.ForeignKey(Response, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    rejected_response = models.ForeignKey(Response, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    strength = models.CharField(max_length=32, choices=choices(Strength), blank=True)
    safety_label = models.CharField(max_length=32, choices=choices(SafetyLabel), blank=True)
    skip_reason = models.CharField(max_length=32, choices=SkipReason.choices, blank=True)
    comment = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(help_text="Time on task, from the page (or lease to submit).")
    idempotency_key = models.CharField(max_length=64, help_text="Client key: a retried submit stores one row.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["annotator", "idempotency_key"], name="annotation_idempotency"),
            models.CheckConstraint(
                condition=(
                    Q(skip_reason="", chosen_response__isnull=False, rejected_response__isnull=False)
                    & ~Q(choice="")
                    & ~Q(strength="")
                )
                | (~Q(skip_reason="") & Q(choice="", strength="", chosen_response__isnull=True)),
                name="annotation_judged_or_skipped",
            ),
        ]
        indexes = [models.Index(fields=["comparison", "created_at"], name="annotation_comparison_time")]

    def __str__(self) -> str:
        return f"Annotation {self.pk} on comparison {self.comparison_id}"

    @property
    def is_skipped(self) -> bool:
        return bool(self.skip_reason)


class LivePair(models.Model):
    """A pair sampled on demand for a prompt an annotator just wrote (or a dialogue's next turn).

    The browser polls it by id until it is done; the finished comparison is leased to its author.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for the sampler"
        DONE = "done", "Sampled"
        FAILED = "failed", "Sampling failed"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="live_pairs")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="live_pairs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="live_pairs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    comparison = models.ForeignKey(Comparison, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    assignment = models.ForeignKey(Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["batch", "prompt"], name="live_pair_once_per_prompt")]

    def __str__(self) -> str:
        return f"Live pair {self.pk} ({self.status})"


class GoldAnswer(models.Model):
    """The known answer of a gold comparison: which response is better, and optionally the safety label."""

    comparison = models.OneToOneField(Comparison, on_delete=models.CASCADE, related_name="gold_answer")
    better_response = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    safety_label = models.CharField(
        max_length=32, choices=choices(SafetyLabel), blank=True, help_text="Expected safety label (empty: not checked)."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Gold answer of comparison {self.comparison_id}"


class GoldReview(models.Model):
    """An annotator's standing on gold items; `flagged` asks an admin to review their work.

    Accuracy counts the gold answers given since the last clear, so a cleared annotator starts afresh.
    """

    annotator = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gold_review")
    answered = models.PositiveIntegerField(default=0, help_text="Gold answers since the last clear.")
    correct = models.PositiveIntegerField(default=0)
    flagged = models.BooleanField(default=False)
    flagged_at = models.DateTimeField(null=True, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-flagged", "annotator_id"]

    def __str__(self) -> str:
        return f"Gold review of {self.annotator_id}"

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answered if self.answered else None


class GoldComparison(Comparison):
    """Gold comparisons as the admin lists and adds them (a proxy: the rows are Comparisons with is_gold)."""

    class Meta:
        proxy = True
        verbose_name = "gold comparison"
