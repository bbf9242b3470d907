"""Training runs: researchers start them, a `training` worker executes them, the registry records the result.

A run trains into a work directory beside its final one, and the checkpoint is registered only once
the finished model has been moved into place, in the same transaction that marks the run done: a
failed or killed run never leaves the registry pointing at a partial model. A killed run that is
delivered again resumes from its last resumable checkpoint.
"""

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from backend.audit.services import audit_record
from backend.checkpoints.models import Checkpoint, CheckpointKind, TrainingRun
from backend.checkpoints.selectors import checkpoint_local_path
from backend.errors import Conflict, InvalidInput
from backend.idempotency import create_once
from exports.models import ExportRun
from training.backbones import BUILTIN_BACKBONES, builtin_backbone

EXPORT_NOT_READY = "The export is not finished (status {status}); train on a finished export."
EXPORT_UNKNOWN = "No export with this id."
BACKBONE_REQUIRED = "Give a backbone: a registered checkpoint id, or a built-in backbone name."
BACKBONE_UNKNOWN = "No checkpoint with this id."
BUILTIN_UNKNOWN = "Unknown built-in backbone; known: {known}."
KIND_UNKNOWN = "kind must be reward_helpfulness or reward_safety."
CONFIG_UNKNOWN = "Unknown setting(s) {names}; allowed: {allowed}."
CONFIG_TYPE = "{name} must be a {kind}."
LOG_TAIL_LINES = 40

# Settings a researcher may change, with their types (the rest keep the trainer's defaults).
CONFIG_FIELDS: dict[str, type] = {
    "learning_rate": float,
    "min_lr_ratio": float,
    "warmup_ratio": float,
    "min_warmup_steps": int,
    "batch_size": int,
    "micro_batch_size": int,
    "max_length": int,
    "weight_decay": float,
    "max_grad_norm": float,
    "epochs": int,
    "use_margin": bool,
    "seed": int,
    "checkpoint_every": int,
}
_REWARD_KINDS = {
    TrainingRun.Kind.REWARD_HELPFULNESS: CheckpointKind.REWARD_HELPFULNESS,
    TrainingRun.Kind.REWARD_SAFETY: CheckpointKind.REWARD_SAFETY,
}


def _check_config(config: dict[str, Any]) -> dict[str, Any]:
    unknown = set(config) - set(CONFIG_FIELDS)
    if unknown:
        raise InvalidInput(
            CONFIG_UNKNOWN.format(names=", ".join(sorted(unknown)), allowed=", ".join(CONFIG_FIELDS)), field="config"
        )
    for name, value in config.items():
        kind = CONFIG_FIELDS[name]
        valid = isinstance(value, bool) if kind is bool else isinstance(value, (int, float) if kind is float else int)
        if not valid or (kind is not bool and isinstance(value, bool)) or (kind is not bool and value < 0):
            raise InvalidInput(CONFIG_TYPE.format(name=name, kind=f"non-negative {kind.__name__}"), field="config")
    return config


def training_run_check(
    *,
    kind: str,
    export_id: int,
    base_checkpoint_id: int | None = None,
    builtin_backbone: str = "",
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate a reward-model run's options; returns the checked config."""
    if kind not in _REWARD_KINDS:
        raise InvalidInput(KIND_UNKNOWN, field="kind")
    export = ExportRun.objects.filter(pk=export_id).first()
    if export is None:
        raise InvalidInput(EXPORT_UNKNOWN, field="export")
    if export.status != ExportRun.Status.DONE:
        raise Conflict(EXPORT_NOT_READY.format(status=export.status))
    if (base_checkpoint_id is None) == (not builtin_backbone):
        raise InvalidInput(BACKBONE_REQUIRED, field="backbone")
    if base_checkpoint_id is not None and not Checkpoint.objects.filter(pk=base_checkpoint_id).exists():
        raise InvalidInput(BACKBONE_UNKNOWN, field="backbone")
    if builtin_backbone and builtin_backbone not in BUILTIN_BACKBONES:
        raise InvalidInput(BUILTIN_UNKNOWN.format(known=", ".join(BUILTIN_BACKBONES)), field="backbone")
    return _check_config(config or {})


def queued_run(
    *, created_by: User | None, client_key: str, enqueue: Callable[[int], None], **fields: Any
) -> TrainingRun:
    """A new training run (reward model or policy), audited, and published once its transaction commits."""
    run = TrainingRun.objects.create(created_by=created_by, client_key=client_key, **fields)
    audit_record(actor=created_by, action="training_run.create", target=run)
    transaction.on_commit(partial(enqueue, run.pk))
    return run


def training_run_create(
    *,
    kind: str,
    export_id: int,
    created_by: User | None,
    enqueue: Callable[[int], None],
    base_checkpoint_id: int | None = None,
    builtin_backbone: str = "",
    config: dict[str, Any] | None = None,
    client_key: str = "",
) -> tuple[TrainingRun, bool]:
    """Validate and queue a reward-model run on a finished export; returns (run, created)."""

    def create() -> TrainingRun:
        checked = training_run_check(
            kind=kind,
            export_id=export_id,
            base_checkpoint_id=base_checkpoint_id,
            builtin_backbone=builtin_backbone,
            config=config,
        )
        return queued_run(
            created_by=created_by,
            client_key=client_key,
            enqueue=enqueue,
            kind=kind,
            export_id=export_id,
            base_checkpoint_id=base_checkpoint_id,
            builtin_backbone=builtin_backbone,
            config=checked,
        )

    return create_once(TrainingRun.objects, owner=created_by, client_key=client_key, create=create)


def _backbone_path(run: TrainingRun) -> Path:
    if run.base_checkpoint is not None:
        return checkpoint_local_path(checkpoint=run.base_checkpoint)
    return builtin_backbone(run.builtin_backbone)


def training_run_output_dir(run: TrainingRun) -> Path:
    return Path(settings.CHECKPOINTS_ROOT) / f"{run.kind.replace('_', '-')}-run{run.pk:05d}"


def training_run_execute(
    *, run_id: int, on_progress: Callable[[int, int, dict[str, float]], None] | None = None
) -> TrainingRun:
    """Train (or resume) the run and register its reward model; a finished run is left as it is."""
    from training.reward_trainer import RewardTrainingConfig, train_reward_model  # torch: only where runs train

    run = TrainingRun.objects.select_related("export", "base_checkpoint").get(pk=run_id)
    if run.status == TrainingRun.Status.DONE:
        return run
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING, started_at=timezone.now(), error="")
    output = training_run_output_dir(run)
    lines: list[str] = []

    def progress(step: int, total: int, entry: dict[str, float]) -> None:
        lines.append(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
        TrainingRun.objects.filter(pk=run.pk).update(
            step=step, total_steps=total, log_tail="\n".join(lines[-LOG_TAIL_LINES:])
        )
        if on_progress is not None:
            on_progress(step, total, entry)

    try:
        metrics = train_reward_model(
            RewardTrainingConfig(
                export_dir=Path(run.export.directory),
                backbone=_backbone_path(run),
                output_dir=output,
                extra={"training_run": run.pk, "kind": run.kind},
                **run.config,
            ),
            progress=progress,
        )
    except Exception as error:
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.FAILED, error=f"{type(error).__name__}: {error}", finished_at=timezone.now()
        )
        raise
    summary = {key: value for key, value in metrics.items() if key != "log"}
    with transaction.atomic():
        checkpoint = Checkpoint.objects.create(
            name=f"{run.kind.replace('_', '-')}-run{run.pk:05d}",
            kind=_REWARD_KINDS[TrainingRun.Kind(run.kind)],
            path=str(output),
            parent=run.base_checkpoint,
            produced_by=f"training-run:{run.pk}",
            notes=f"Trained on export {run.export_id}.",
            created_by=run.created_by,
        )
        audit_record(actor=None, action="checkpoint.register", target=checkpoint, details={"training_run": run.pk})
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.DONE,
            metrics=summary,
            output_checkpoint=checkpoint,
            finished_at=timezone.now(),
        )
    run.refresh_from_db()
    return run
