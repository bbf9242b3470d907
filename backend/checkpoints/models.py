"""A registered model checkpoint: a Hugging Face directory that the engines and trainers load."""

from django.conf import settings
from django.db import models


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
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["kind", "-created_at"], name="checkpoint_kind_recent")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"
