"""One turn of the RLHF loop (Iteration), temperature scans of policy checkpoints, and the templates that make each
week's batches."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from backend.batches.models import Batch, Focus
from backend.checkpoints.models import Checkpoint, CheckpointKind, TrainingRun
from backend.jobs import JobStatus


class Method(models.TextChoices):
    REJECTION_SAMPLING = "rejection_sampling", "Rejection sampling"
    PPO = "ppo", "PPO"


class TemperatureScan(models.Model):
    """The best reward among N samples against N, per temperature, of one policy checkpoint (Llama 2, Figure 8).

    A task on the `training` queue runs it (an iteration's optional step, or a checkpoint's action); `result`
    holds the curve (`max_reward_by_n`: per temperature, one value per N), the mean reward per temperature and
    the best temperature, and `output_dir` holds scan.json and temperature_scan.png.
    """

    Status = JobStatus

    checkpoint = models.ForeignKey(
        Checkpoint, on_delete=models.PROTECT, related_name="temperature_scans", help_text="The policy scanned."
    )
    reward_helpfulness = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="+")
    reward_safety = models.ForeignKey(
        Checkpoint,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty: the helpfulness model scores every prompt.",
    )
    prompts_path = models.CharField(max_length=1000, help_text="The prompts JSONL (its test split by default).")
    config = models.JSONField(default=dict, help_text="Settings that differ from the scan's defaults.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    step = models.PositiveIntegerField(default=0, help_text="Temperatures scanned so far.")
    total_steps = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    output_dir = models.CharField(max_length=1000, blank=True)
    error = models.TextField(blank=True)
    client_key = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "client_key"], condition=~Q(client_key=""), name="temperature_scan_client_key"
            ),
        ]

    def __str__(self) -> str:
        return f"Temperature scan {self.pk} of {self.checkpoint_id} ({self.status})"

    @property
    def progress(self) -> float:
        if self.status == self.Status.DONE:
            return 1.0
        return self.step / self.total_steps if self.total_steps else 0.0

    @property
    def best_temperature(self) -> float | None:
        value = self.result.get("best_temperature")
        return float(value) if value is not None else None


class Iteration(models.Model):
    """Annotations -> export -> reward models -> rejection sampling and/or PPO -> a new policy checkpoint.

    A driver task advances it one step at a time; every step is idempotent, so a redelivered or retried
    task picks up where the iteration stands.
    """

    Status = JobStatus

    class Step(models.TextChoices):
        EXPORT = "export", "Export the datasets"
        REWARD_MODELS = "reward_models", "Train the reward models"
        TEMPERATURE_SCAN = "temperature_scan", "Scan the base policy's sampling temperatures"
        POLICY = "policy", "Train the policy"
        EVALUATE = "evaluate", "Score new vs previous policy on held-out prompts"
        DONE = "done", "Done"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    step = models.CharField(max_length=16, choices=Step.choices, default=Step.EXPORT)
    batches = models.ManyToManyField(Batch, blank=True, related_name="iterations", help_text="Annotated batches.")
    given_export = models.ForeignKey(
        "exports.ExportRun",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="An existing export to train on instead of the batches.",
    )
    base_policy = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="+")
    methods = models.JSONField(default=list, help_text="rejection_sampling and/or ppo (both: RS, then PPO on it).")
    reward_backbone = models.ForeignKey(
        Checkpoint,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The reward models' backbone checkpoint.",
    )
    reward_builtin_backbone = models.CharField(max_length=100, blank=True, help_text="Or a built-in backbone.")
    config = models.JSONField(
        default=dict,
        help_text='Overrides per step: {"reward": {...}, "temperature_scan": {...}, "rejection_sampling": {...}, '
        '"ppo": {...}}.',
    )
    scan_temperatures = models.BooleanField(
        default=False,
        help_text="After the reward models, scan the base policy's sampling temperatures (rejection sampling's "
        'temperature "scan" then takes the best one).',
    )
    temperature_scan = models.ForeignKey(
        TemperatureScan, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    helpfulness_export = models.ForeignKey(
        "exports.ExportRun", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    safety_export = models.ForeignKey(
        "exports.ExportRun", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reward_helpfulness_run = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reward_safety_run = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rejection_sampling_run = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    ppo_run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    evaluation_reward_models = models.ManyToManyField(
        Checkpoint,
        blank=True,
        related_name="+",
        limit_choices_to={"kind__in": [CheckpointKind.REWARD_HELPFULNESS, CheckpointKind.REWARD_SAFETY]},
        help_text="More reward-model checkpoints that score the held-out answers (not optimised against).",
    )
    prompts_path = models.CharField(max_length=1000, blank=True, help_text="The policy runs' prompts JSONL.")
    new_policy = models.ForeignKey(Checkpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    evaluation = models.JSONField(
        default=dict, blank=True, help_text="Mean reward of the new and the previous policy on held-out prompts."
    )
    error = models.TextField(blank=True)
    client_key = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "client_key"], condition=~Q(client_key=""), name="iteration_client_key"
            ),
            models.CheckConstraint(
                condition=Q(reward_backbone__isnull=False) | ~Q(reward_builtin_backbone=""),
                name="iteration_has_reward_backbone",
            ),
        ]

    def __str__(self) -> str:
        return f"Iteration {self.pk} ({self.status}, {self.step})"


class BatchTemplate(models.Model):
    """What each week's batch looks like; the weekly job makes one batch per active template and ISO week."""

    class PromptSource(models.TextChoices):
        POOL = "pool", "The imported prompt pool (least used first)"
        TAGS = "tags", "Pool prompts with all of the given tags"
        ANNOTATOR = "annotator", "Annotators write their prompts (live pairs)"

    name = models.CharField(max_length=100, unique=True, help_text="Batches are named '<name>-<ISO week>'.")
    focus = models.CharField(max_length=16, choices=Focus.choices, default=Focus.HELPFULNESS)
    size = models.PositiveIntegerField(help_text="Comparisons per batch.")
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Annotators per comparison.")
    temperatures = models.JSONField(default=list, help_text="Temperature grid, e.g. [0.7, 1.0].")
    max_new_tokens = models.PositiveIntegerField(default=512)
    guidelines = models.TextField(blank=True, help_text="Empty: the focus's default guidelines.")
    prompt_source = models.CharField(max_length=16, choices=PromptSource.choices, default=PromptSource.POOL)
    prompt_tags = models.JSONField(default=list, blank=True, help_text="With prompt source 'tags': required tags.")
    annotator_quota = models.PositiveIntegerField(null=True, blank=True)
    held_out_size = models.PositiveIntegerField(default=1000)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class WeeklyBatch(models.Model):
    """The batch a template made for an ISO week: at most one, whatever the job's retries."""

    template = models.ForeignKey(BatchTemplate, on_delete=models.CASCADE, related_name="weekly_batches")
    iso_week = models.CharField(max_length=8)
    batch = models.OneToOneField(Batch, on_delete=models.CASCADE, related_name="weekly_origin")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-iso_week", "template_id"]
        constraints = [models.UniqueConstraint(fields=["template", "iso_week"], name="weekly_batch_once")]

    def __str__(self) -> str:
        return f"{self.template.name} {self.iso_week}"
