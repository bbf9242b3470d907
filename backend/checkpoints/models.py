"""A registered model checkpoint: a Hugging Face directory that the engines and trainers load."""

from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from backend.jobs import JobStatus

SERVING_URL_INVALID = "serving_url must be an http or https URL such as http://serve-a:8000/v1, or empty."


def validate_serving_url(value: str) -> None:
    """An http(s) URL with a host; unlike Django's URLValidator, a bare service name (serve-a) is a host."""
    parsed = urlparse(value.strip())
    if value.strip() and (parsed.scheme not in ("http", "https") or not parsed.hostname):
        raise ValidationError(SERVING_URL_INVALID)


class CheckpointKind(models.TextChoices):
    POLICY = "policy", "Policy"
    REWARD_HELPFULNESS = "reward_helpfulness", "Reward model (helpfulness)"
    REWARD_SAFETY = "reward_safety", "Reward model (safety)"


class Checkpoint(models.Model):
    name = models.CharField(max_length=200, unique=True, help_text="Human name, e.g. 'policy-w07-ppo'.")
    kind = models.CharField(max_length=32, choices=CheckpointKind.choices, default=CheckpointKind.POLICY)
    path = models.CharField(
        max_length=1000,
        help_text="Hugging Face model directory (config + safetensors), absolute or under STORAGE_ROOT.",
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="The checkpoint this one was trained from.",
    )
    produced_by = models.CharField(
        max_length=200,
        blank=True,
        help_text="The run that produced it (a training run id, or 'import' for outside checkpoints).",
    )
    serving_url = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_serving_url],
        help_text=(
            "Base URL of an OpenAI-compatible server that serves this checkpoint, e.g. http://serve-a:8000/v1 "
            "(`vllm serve DIR --generation-config vllm`); the openai engine sends its requests there."
        ),
    )
    served_model_name = models.CharField(
        max_length=200, blank=True, help_text="The name that server knows it by (--served-model-name); empty: its path."
    )
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["kind", "-created_at"], name="checkpoint_kind_recent")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class TrainingRun(models.Model):
    """One training job: a reward model, or a policy run (rejection sampling or PPO) that uses two of them."""

    class Kind(models.TextChoices):
        REWARD_HELPFULNESS = "reward_helpfulness", "Reward model (helpfulness)"
        REWARD_SAFETY = "reward_safety", "Reward model (safety)"
        REJECTION_SAMPLING = "rejection_sampling", "Policy: rejection-sampling fine-tuning"
        PPO = "ppo", "Policy: PPO"

    Status = JobStatus

    kind = models.CharField(max_length=32, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    export = models.ForeignKey("exports.ExportRun", on_delete=models.PROTECT, related_name="training_runs")
    base_checkpoint = models.ForeignKey(
        Checkpoint,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The backbone (reward runs) or the base policy (policy runs).",
    )
    builtin_backbone = models.CharField(max_length=100, blank=True, help_text="Or a backbone shipped in a package.")
    reward_helpfulness = models.ForeignKey(
        Checkpoint,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Policy runs: the helpfulness reward model that scores samples.",
    )
    reward_safety = models.ForeignKey(
        Checkpoint,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Policy runs: the safety reward model (empty: helpfulness scores everything).",
    )
    prompts_path = models.CharField(
        max_length=1000, blank=True, help_text="Policy runs: the prompts JSONL (train and held-out test prompts)."
    )
    config = models.JSONField(default=dict, help_text="Hyper-parameters that differ from the defaults.")
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    log_tail = models.TextField(blank=True, help_text="The last lines of the run's log.")
    error = models.TextField(blank=True)
    output_checkpoint = models.ForeignKey(
        Checkpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="What it produced."
    )
    client_key = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "client_key"], condition=~models.Q(client_key=""), name="training_run_client_key"
            ),
            models.CheckConstraint(
                condition=models.Q(base_checkpoint__isnull=False) | ~models.Q(builtin_backbone=""),
                name="training_run_has_backbone",
            ),
        ]

    def __str__(self) -> str:
        return f"Training run {self.pk} ({self.kind}, {self.status})"

    @property
    def progress(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0
