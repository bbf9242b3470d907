"""Policy training runs: rejection-sampling fine-tuning or PPO of a policy checkpoint against two reward models.

They share TrainingRun with the reward-model runs and follow the same rules (training_runs.py): the trainer
writes into a work directory beside the final one and resumes from it when a killed run is delivered again,
and the new `policy` checkpoint is registered, with its lineage, in the transaction that marks the run done.

Rejection sampling also gets, when the run starts, what the database knows: the best samples that earlier
rejection-sampling runs in the base policy's lineage kept (`best_samples.jsonl` of each ancestor an RS run
produced), which join its pool unless `include_earlier_samples` is off; and, for `temperature: "scan"`, the
best temperature of the base policy's newest finished temperature scan.
"""

import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from backend.checkpoints.models import Checkpoint, CheckpointKind, TrainingRun
from backend.checkpoints.selectors import checkpoint_local_path
from backend.errors import Conflict, InvalidInput
from backend.idempotency import create_once
from exports.models import ExportRun
from loop.selectors import temperature_scan_latest
from loop.services.training_runs import (
    CONFIG_TYPE,
    CONFIG_UNKNOWN,
    EXPORT_NOT_READY,
    EXPORT_UNKNOWN,
    LOG_TAIL_LINES,
    queued_run,
    training_run_output_dir,
)

POLICY_KIND_UNKNOWN = "kind must be rejection_sampling or ppo."
POLICY_UNKNOWN = "No policy checkpoint with this id."
REWARD_UNKNOWN = "No {kind} reward-model checkpoint with this id."
PROMPTS_MISSING = "No prompts file at {path}."
CONFIG_NOT_OBJECT = "Give the settings as an object of name: value."
SCAN_NEEDED = (
    'temperature "scan" takes the best temperature of the base policy\'s newest finished temperature scan; '
    "{name} has none: scan it first (or turn on the iteration's scan_temperatures)."
)
POLICY_KINDS = (TrainingRun.Kind.REJECTION_SAMPLING, TrainingRun.Kind.PPO)
SCAN_TEMPERATURE = "scan"
"""Rejection sampling's `temperature` value that means: the best temperature of the base policy's newest scan."""
EARLIER_SAMPLES_FILE = "best_samples.jsonl"
"""What an RS run keeps in its output directory (training.rejection_sampling.SAMPLES_FILE)."""
# Trainer settings that are paths, hardware or test hooks, never a researcher's hyper-parameter.
_NOT_SETTINGS = {"device", "bf16", "stop_after_iterations", "seed_offset"}


def _trainer(kind: str) -> tuple[type, Callable[..., dict[str, Any]]]:
    """The run's config class and trainer. Imported here, not at the top: torch loads only in the processes that
    train (the training worker, a management command), not in every web process that creates runs."""
    if kind == TrainingRun.Kind.PPO:
        from training.ppo import PPOConfig, train_ppo

        return PPOConfig, train_ppo
    from training.rejection_sampling import RejectionSamplingConfig, train_rejection_sampling

    return RejectionSamplingConfig, train_rejection_sampling


def policy_config_fields(kind: str) -> dict[str, type]:
    """The trainer's scalar settings (int, float, bool) a researcher may change, read from its config class."""
    config_class, _ = _trainer(kind)
    hints = typing.get_type_hints(config_class)
    return {
        name: hint
        for name, hint in hints.items()
        if hint in (int, float, bool) and name not in _NOT_SETTINGS and not name.startswith("_")
    }


def settings_check(fields: dict[str, type], config: Any, *, field: str = "config") -> dict[str, Any]:
    """`config` checked against `fields`: an object of known names, right types, no negative numbers."""
    if not isinstance(config, dict):
        raise InvalidInput(CONFIG_NOT_OBJECT, field=field)
    unknown = set(config) - set(fields)
    if unknown:
        raise InvalidInput(
            CONFIG_UNKNOWN.format(names=", ".join(sorted(unknown)), allowed=", ".join(sorted(fields))), field=field
        )
    for name, value in config.items():
        kind_of = fields[name]
        if kind_of is bool:
            valid = isinstance(value, bool)
        else:
            accepted = (int, float) if kind_of is float else int
            valid = isinstance(value, accepted) and not isinstance(value, bool) and value >= 0
        if not valid:
            noun = kind_of.__name__ if kind_of is bool else f"non-negative {kind_of.__name__}"
            raise InvalidInput(CONFIG_TYPE.format(name=name, kind=noun), field=field)
    return config


def policy_config_check(kind: str, config: Any, *, field: str = "config") -> dict[str, Any]:
    """A policy run's overrides checked against its trainer's settings; rejection sampling's temperature may also be
    "scan" (see `wants_scan_temperature`)."""
    if kind not in POLICY_KINDS:
        raise InvalidInput(POLICY_KIND_UNKNOWN, field="kind")
    if wants_scan_temperature(kind, config):
        rest = {name: value for name, value in config.items() if name != "temperature"}
        return {**settings_check(policy_config_fields(kind), rest, field=field), "temperature": SCAN_TEMPERATURE}
    return settings_check(policy_config_fields(kind), config, field=field)


def wants_scan_temperature(kind: str, config: Any) -> bool:
    """Whether a rejection-sampling run's temperature is "scan": its base policy's best scanned temperature."""
    return (
        kind == TrainingRun.Kind.REJECTION_SAMPLING
        and isinstance(config, dict)
        and config.get("temperature") == SCAN_TEMPERATURE
    )


def earlier_rejection_samples(checkpoint: Checkpoint) -> list[Path]:
    """The `best_samples.jsonl` of every finished rejection-sampling run that made the checkpoint or one of its
    ancestors (nearest first): the pool of all prior iterations' best samples, for Llama 2's RS."""
    files: list[Path] = []
    seen: set[int] = set()
    current: Checkpoint | None = checkpoint
    while current is not None and current.pk not in seen:
        seen.add(current.pk)
        made_by_rs = TrainingRun.objects.filter(
            output_checkpoint=current, kind=TrainingRun.Kind.REJECTION_SAMPLING, status=TrainingRun.Status.DONE
        ).exists()
        path = checkpoint_local_path(checkpoint=current) / EARLIER_SAMPLES_FILE
        if made_by_rs and path.is_file():
            files.append(path)
        current = current.parent
    return files


def _rejection_sampling_inputs(run: TrainingRun) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainer settings, report entries) that a rejection-sampling run takes from the database when it starts."""
    assert run.base_checkpoint is not None
    trainer: dict[str, Any] = {"earlier_samples": earlier_rejection_samples(run.base_checkpoint)}
    report: dict[str, Any] = {}
    if wants_scan_temperature(run.kind, run.config):
        scan = temperature_scan_latest(checkpoint_id=run.base_checkpoint.pk)
        if scan is None or scan.best_temperature is None:
            raise InvalidInput(SCAN_NEEDED.format(name=run.base_checkpoint.name), field="config.temperature")
        trainer["temperature"] = scan.best_temperature
        report["temperature_scan"] = scan.pk
    return trainer, report


def policy_run_check(
    *,
    kind: str,
    export_id: int,
    base_checkpoint_id: int,
    reward_helpfulness_id: int,
    reward_safety_id: int | None,
    prompts_path: str,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate a policy run's options; returns the checked config."""
    checked = policy_config_check(kind, config or {})
    export = ExportRun.objects.filter(pk=export_id).first()
    if export is None:
        raise InvalidInput(EXPORT_UNKNOWN, field="export")
    if export.status != ExportRun.Status.DONE:
        raise Conflict(EXPORT_NOT_READY.format(status=export.status))
    if not Checkpoint.objects.filter(pk=base_checkpoint_id, kind=CheckpointKind.POLICY).exists():
        raise InvalidInput(POLICY_UNKNOWN, field="base_checkpoint")
    rewards = {
        "reward_helpfulness": (reward_helpfulness_id, CheckpointKind.REWARD_HELPFULNESS),
        "reward_safety": (reward_safety_id, CheckpointKind.REWARD_SAFETY),
    }
    for field, (checkpoint_id, reward_kind) in rewards.items():
        if checkpoint_id is None and field == "reward_safety":
            continue
        if checkpoint_id is None or not Checkpoint.objects.filter(pk=checkpoint_id, kind=reward_kind).exists():
            raise InvalidInput(REWARD_UNKNOWN.format(kind=reward_kind.label.lower()), field=field)
    if not Path(prompts_path).is_file():
        raise InvalidInput(PROMPTS_MISSING.format(path=prompts_path), field="prompts_path")
    if wants_scan_temperature(kind, checked) and temperature_scan_latest(checkpoint_id=base_checkpoint_id) is None:
        base = Checkpoint.objects.get(pk=base_checkpoint_id)
        raise InvalidInput(SCAN_NEEDED.format(name=base.name), field="config")
    return checked


def policy_run_create(
    *,
    kind: str,
    export_id: int,
    base_checkpoint_id: int,
    reward_helpfulness_id: int,
    reward_safety_id: int | None,
    prompts_path: str,
    created_by: User | None,
    enqueue: Callable[[int], None],
    config: dict[str, Any] | None = None,
    client_key: str = "",
) -> tuple[TrainingRun, bool]:
    """Validate and queue a policy run; returns (run, created). A retried create with the same key returns it."""

    def create() -> TrainingRun:
        checked = policy_run_check(
            kind=kind,
            export_id=export_id,
            base_checkpoint_id=base_checkpoint_id,
            reward_helpfulness_id=reward_helpfulness_id,
            reward_safety_id=reward_safety_id,
            prompts_path=prompts_path,
            config=config,
        )
        return queued_run(
            created_by=created_by,
            client_key=client_key,
            enqueue=enqueue,
            kind=kind,
            export_id=export_id,
            base_checkpoint_id=base_checkpoint_id,
            reward_helpfulness_id=reward_helpfulness_id,
            reward_safety_id=reward_safety_id,
            prompts_path=prompts_path,
            config=checked,
        )

    return create_once(TrainingRun.objects, owner=created_by, client_key=client_key, create=create)


def _lineage_notes(run: TrainingRun) -> str:
    safety = run.reward_safety.name if run.reward_safety else "none (helpfulness scores every prompt)"
    return (
        f"{TrainingRun.Kind(run.kind).label} of {run.base_checkpoint.name if run.base_checkpoint else '?'}; "
        f"reward models: helpfulness {run.reward_helpfulness.name if run.reward_helpfulness else '?'}, "
        f"safety {safety}; export {run.export_id}; prompts {run.prompts_path}; "
        f"config {json.dumps(run.config, sort_keys=True)}."
    )


def policy_run_execute(
    *,
    run_id: int,
    on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
    settings: dict[str, Any] | None = None,
) -> TrainingRun:
    """Train (or resume) the policy run and register the new policy; a finished run is left as it is.

    `settings` are trainer settings that are not hyper-parameters (device, a test's stop_after_iterations).
    """
    run = TrainingRun.objects.select_related(
        "base_checkpoint", "reward_helpfulness", "reward_safety", "export", "created_by"
    ).get(pk=run_id)
    if run.status == TrainingRun.Status.DONE:
        return run
    if run.kind not in POLICY_KINDS or run.base_checkpoint is None or run.reward_helpfulness is None:
        raise InvalidInput(POLICY_KIND_UNKNOWN, field="kind")
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING, started_at=timezone.now(), error="")
    output = training_run_output_dir(run)
    config_class, train = _trainer(run.kind)
    given: dict[str, Any] = {}
    report: dict[str, Any] = {}
    lines: list[str] = []

    def progress(step: int, total: int, entry: dict[str, float]) -> None:
        lines.append(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
        TrainingRun.objects.filter(pk=run.pk).update(
            step=step, total_steps=total, log_tail="\n".join(lines[-LOG_TAIL_LINES:])
        )
        if on_progress is not None:
            on_progress(step, total, entry)

    try:
        if run.kind == TrainingRun.Kind.REJECTION_SAMPLING:
            given, report = _rejection_sampling_inputs(run)
        metrics = train(
            config_class(
                policy=checkpoint_local_path(checkpoint=run.base_checkpoint),
                reward_helpfulness=checkpoint_local_path(checkpoint=run.reward_helpfulness),
                reward_safety=checkpoint_local_path(checkpoint=run.reward_safety) if run.reward_safety else None,
                prompts=Path(run.prompts_path),
                output_dir=output,
                **{**run.config, **given},
                **(settings or {}),
            ),
            progress=progress,
        )
    except Exception as error:
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.FAILED, error=f"{type(error).__name__}: {error}", finished_at=timezone.now()
        )
        raise
    if not (output / "config.json").exists():  # stopped on purpose before the end (a test's simulated kill)
        run.refresh_from_db()
        return run
    summary = {**{key: value for key, value in metrics.items() if key not in ("log", "config")}, **report}
    with transaction.atomic():
        checkpoint = Checkpoint.objects.create(
            name=f"policy-{run.kind.replace('_', '-')}-run{run.pk:05d}",
            kind=CheckpointKind.POLICY,
            path=str(output),
            parent=run.base_checkpoint,
            produced_by=f"training-run:{run.pk}",
            notes=_lineage_notes(run),
            created_by=run.created_by,
        )
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.DONE, metrics=summary, output_checkpoint=checkpoint, finished_at=timezone.now()
        )
    run.refresh_from_db()
    return run
