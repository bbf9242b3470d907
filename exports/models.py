"""Export runs (immutable once done) and open-source preference data imported from files."""

from django.conf import settings
from django.db import models

from backend.batches.models import Batch
from backend.jobs import JobStatus


class ExportRun(models.Model):
    """One build of a dataset: who asked, with which filters, and what came out."""

    Status = JobStatus

    class Granularity(models.TextChoices):
        COMPARISON = "comparison", "One row per comparison (consensus of its annotations)"
        ANNOTATION = "annotation", "One row per annotation"

    class Mix(models.TextChoices):
        NONE = "", "No mix: the filtered comparisons only"
        HELPFULNESS = "helpfulness", "Helpfulness RM mix (Llama 2 3.2.2)"
        SAFETY = "safety", "Safety RM mix (Llama 2 3.2.2)"

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    client_key = models.CharField(max_length=64, blank=True, help_text="A retried create returns the same run.")
    filters = models.JSONField(default=dict, help_text="Batches, focus, dates, exclusions, as validated.")
    batches = models.ManyToManyField(
        Batch,
        related_name="exports",
        blank=True,
        help_text="The batches it reads: those its filters name when it is created, its manifest's source batches "
        "once it is built.",
    )
    formats = models.JSONField(default=list, help_text="'jsonl' and/or 'parquet'.")
    granularity = models.CharField(max_length=16, choices=Granularity.choices, default=Granularity.COMPARISON)
    margin_scheme = models.CharField(max_length=8, default="none", help_text="none, small or large (Llama 2).")
    mix = models.CharField(max_length=16, choices=Mix.choices, blank=True, default=Mix.NONE)
    seed = models.BigIntegerField(default=0, help_text="Seeds the mix's sampling.")
    test_mix = models.BooleanField(
        default=False,
        help_text="A mix's test file also takes the test rows of the data sampled into it (default: own focus only).",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    rows_written = models.PositiveBigIntegerField(default=0)
    rows_expected = models.PositiveBigIntegerField(default=0)
    directory = models.CharField(max_length=1000, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "client_key"],
                condition=~models.Q(client_key=""),
                name="export_run_unique_client_key",
            )
        ]

    def __str__(self) -> str:
        return f"Export {self.pk} ({self.status})"

    @property
    def progress(self) -> float:
        return min(self.rows_written / self.rows_expected, 1.0) if self.rows_expected else 0.0


class ExternalPreference(models.Model):
    """An open-source preference pair (e.g. Anthropic HH), kept apart from the platform's annotations."""

    source = models.CharField(max_length=100, help_text="Where it came from, e.g. 'anthropic-hh-harmless'.")
    harmless = models.BooleanField(help_text="Harmlessness data (goes into the safety mix), else helpfulness.")
    prompt = models.JSONField(help_text="The dialogue up to the last user turn, as role/content messages.")
    chosen = models.TextField()
    rejected = models.TextField()
    row_hash = models.CharField(max_length=64, help_text="sha256 of the pair: importing a file twice adds nothing.")
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["source", "row_hash"], name="external_preference_once")]

    def __str__(self) -> str:
        return f"{self.source} #{self.pk}"
