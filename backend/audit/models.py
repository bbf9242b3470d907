"""One audit event: an actor, an action, the object it touched, and details."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who acted; empty for the system (a schedule, a worker, a management command).",
    )
    actor_username = models.CharField(
        max_length=150, blank=True, help_text="The actor's username when it acted; kept if the user is deleted."
    )
    action = models.CharField(max_length=100, db_index=True, help_text='What happened, e.g. "batch.open".')
    target_type = models.CharField(max_length=100, blank=True, help_text='app_label.model, e.g. "batches.batch".')
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="audit_target_idx")]

    def __str__(self) -> str:
        who = self.actor_username or "system"
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.target_repr}".strip()
