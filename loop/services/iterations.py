"""Iterations: one turn of the RLHF loop as a state machine that a driver task advances one step at a time.

export -> reward_models -> [temperature_scan] -> policy -> evaluate -> done (the scan of the base policy only with
`scan_temperatures`; rejection sampling's temperature "scan" then takes its best temperature). Every step
records what it creates on the iteration before running it and reuses it when run again (exports, training
runs, the scan: each finished one is left as it is, a killed one resumes its work directory), so a
redelivered or retried task picks up where the iteration stands. A failing step marks the iteration failed
with the error; `iteration_retry` continues.
"""

import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from backend.audit.services import audit_record
from backend.batches.models import Annotation, Batch, Focus
from backend.checkpoints.models import Checkpoint, CheckpointKind, TrainingRun
from backend.errors import Conflict, InvalidInput
from backend.idempotency import create_once
from exports.models import ExportRun
from exports.services import export_build, export_create
from loop.models import Iteration, Method
from loop.services.evaluation import iteration_reward_models, policies_compare, previous_iteration
from loop.services.policy_runs import (
    policy_config_check,
    policy_run_create,
    policy_run_execute,
    settings_check,
)
from loop.services.prompts_file import prompts_file_write
from loop.services.temperature_scans import (
    SCAN_CONFIG,
    iteration_temperature_scan,
    scan_config_check,
    scan_temperature_check,
)
from loop.services.training_runs import CONFIG_FIELDS, training_run_create, training_run_execute
from training.backbones import BUILTIN_BACKBONES

logger = logging.getLogger(__name__)

METHODS_INVALID = "methods must be a non-empty list of: rejection_sampling, ppo."
SOURCE_REQUIRED = "Give either batches (a list of batch ids) or an existing export, not both."
BATCHES_UNKNOWN = "Unknown batch id(s): {ids}."
BATCHES_UNANNOTATED = "The batches have no judged annotations yet; annotate them before training."
EXPORT_UNKNOWN = "No finished export with this id."
BASE_POLICY_UNKNOWN = "No policy checkpoint with this id."
BACKBONE_REQUIRED = "Give a reward backbone: a registered checkpoint id, or a built-in backbone name."
BACKBONE_UNKNOWN = "No checkpoint with this id."
BUILTIN_UNKNOWN = "Unknown built-in backbone; known: {known}."
CONFIG_INVALID = (
    "config must be an object with any of: reward, temperature_scan, rejection_sampling, ppo (each an object)."
)
EVALUATION_MODELS_INVALID = (
    "Not reward-model checkpoint id(s): {ids}. Give ids of reward_helpfulness or reward_safety checkpoints."
)
REWARD_KINDS = (CheckpointKind.REWARD_HELPFULNESS, CheckpointKind.REWARD_SAFETY)
RETRY_DONE = "This iteration finished; start a new one."
NO_POLICY = "The policy step produced no checkpoint."
CONFIG_STEPS = ("reward", SCAN_CONFIG, *Method.values)
# The order the policy methods run in: rejection sampling first, PPO on its result.
METHOD_ORDER = (Method.REJECTION_SAMPLING, Method.PPO)


def iteration_check(
    *,
    base_policy_id: int,
    methods: Sequence[str],
    batch_ids: Sequence[int] = (),
    export_id: int | None = None,
    reward_backbone_id: int | None = None,
    reward_builtin_backbone: str = "",
    config: dict[str, Any] | None = None,
    evaluation_reward_model_ids: Sequence[int] = (),
    scan_temperatures: bool = False,
) -> dict[str, Any]:
    """Validate an iteration's options; returns them normalised."""
    if not isinstance(methods, (list, tuple)) or not methods or set(methods) - set(Method.values):
        raise InvalidInput(METHODS_INVALID, field="methods")
    if bool(batch_ids) == (export_id is not None):
        raise InvalidInput(SOURCE_REQUIRED, field="batches")
    if batch_ids:
        found = set(Batch.objects.filter(pk__in=batch_ids).values_list("id", flat=True))
        missing = set(batch_ids) - found
        if missing:
            raise InvalidInput(BATCHES_UNKNOWN.format(ids=", ".join(map(str, sorted(missing)))), field="batches")
        if not Annotation.objects.filter(comparison__batch_id__in=batch_ids, skip_reason="").exists():
            raise InvalidInput(BATCHES_UNANNOTATED, field="batches")
    if export_id is not None and not ExportRun.objects.filter(pk=export_id, status=ExportRun.Status.DONE).exists():
        raise InvalidInput(EXPORT_UNKNOWN, field="export")
    if not Checkpoint.objects.filter(pk=base_policy_id, kind=CheckpointKind.POLICY).exists():
        raise InvalidInput(BASE_POLICY_UNKNOWN, field="base_policy")
    if (reward_backbone_id is None) == (not reward_builtin_backbone):
        raise InvalidInput(BACKBONE_REQUIRED, field="reward_backbone")
    if reward_backbone_id is not None and not Checkpoint.objects.filter(pk=reward_backbone_id).exists():
        raise InvalidInput(BACKBONE_UNKNOWN, field="reward_backbone")
    if reward_builtin_backbone and reward_builtin_backbone not in BUILTIN_BACKBONES:
        raise InvalidInput(BUILTIN_UNKNOWN.format(known=", ".join(BUILTIN_BACKBONES)), field="reward_backbone")
    config = config or {}
    if not isinstance(config, dict) or set(config) - set(CONFIG_STEPS):
        raise InvalidInput(CONFIG_INVALID, field="config")
    checked = {"reward": settings_check(CONFIG_FIELDS, config.get("reward", {}), field="config.reward")}
    for method in Method.values:
        if method in config:
            checked[method] = policy_config_check(method, config[method], field=f"config.{method}")
    if SCAN_CONFIG in config:
        checked[SCAN_CONFIG] = scan_config_check(config[SCAN_CONFIG], field=f"config.{SCAN_CONFIG}")
    if Method.REJECTION_SAMPLING in methods and not scan_temperatures:  # "scan" then needs an earlier scan
        scan_temperature_check(base_policy_id, checked.get(Method.REJECTION_SAMPLING, {}), field="config")
    return {
        "methods": [method for method in METHOD_ORDER if method in methods],
        "batch_ids": sorted(set(batch_ids)),
        "config": checked,
        "evaluation_reward_model_ids": _evaluation_models_check(evaluation_reward_model_ids),
    }


def _evaluation_models_check(ids: Sequence[int]) -> list[int]:
    """The extra reward models of the held-out evaluation: registered reward checkpoints, each once."""
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise InvalidInput(EVALUATION_MODELS_INVALID.format(ids=ids), field="evaluation_reward_models")
    found = set(Checkpoint.objects.filter(pk__in=ids, kind__in=REWARD_KINDS).values_list("id", flat=True))
    wrong = sorted(set(ids) - found)
    if wrong:
        ids_text = ", ".join(map(str, wrong))
        raise InvalidInput(EVALUATION_MODELS_INVALID.format(ids=ids_text), field="evaluation_reward_models")
    return sorted(found)


def iteration_create(
    *,
    created_by: User | None,
    enqueue: Callable[[int], None],
    base_policy_id: int,
    methods: Sequence[str],
    batch_ids: Sequence[int] = (),
    export_id: int | None = None,
    reward_backbone_id: int | None = None,
    reward_builtin_backbone: str = "",
    config: dict[str, Any] | None = None,
    evaluation_reward_model_ids: Sequence[int] = (),
    scan_temperatures: bool = False,
    client_key: str = "",
) -> tuple[Iteration, bool]:
    """Validate and queue an iteration; returns (iteration, created). A retry with the same key returns it."""

    def create() -> Iteration:
        checked = iteration_check(
            base_policy_id=base_policy_id,
            methods=methods,
            batch_ids=batch_ids,
            export_id=export_id,
            reward_backbone_id=reward_backbone_id,
            reward_builtin_backbone=reward_builtin_backbone,
            config=config,
            evaluation_reward_model_ids=evaluation_reward_model_ids,
            scan_temperatures=scan_temperatures,
        )
        iteration = Iteration.objects.create(
            base_policy_id=base_policy_id,
            methods=checked["methods"],
            given_export_id=export_id,
            reward_backbone_id=reward_backbone_id,
            reward_builtin_backbone=reward_builtin_backbone,
            config=checked["config"],
            scan_temperatures=scan_temperatures,
            created_by=created_by,
            client_key=client_key,
        )
        iteration.batches.set(checked["batch_ids"])
        iteration.evaluation_reward_models.set(checked["evaluation_reward_model_ids"])
        audit_record(
            actor=created_by,
            action="iteration.start",
            target=iteration,
            details={
                "methods": checked["methods"],
                "batches": checked["batch_ids"],
                "export": export_id,
                "evaluation_reward_models": checked["evaluation_reward_model_ids"],
                "scan_temperatures": scan_temperatures,
            },
        )
        transaction.on_commit(partial(enqueue, iteration.pk))
        return iteration

    return create_once(Iteration.objects, owner=created_by, client_key=client_key, create=create)


def iteration_retry(*, iteration: Iteration, enqueue: Callable[[int], None], actor: User | None) -> Iteration:
    """Queue a failed iteration again from the step that failed; a queued or running one is left as it is."""
    with transaction.atomic():
        iteration = Iteration.objects.select_for_update().get(pk=iteration.pk)
        if iteration.status == Iteration.Status.DONE:
            raise Conflict(RETRY_DONE)
        if iteration.status == Iteration.Status.FAILED:
            iteration.status, iteration.error = Iteration.Status.QUEUED, ""
            iteration.save(update_fields=["status", "error"])
            audit_record(actor=actor, action="iteration.retry", target=iteration, details={"step": iteration.step})
            transaction.on_commit(partial(enqueue, iteration.pk))
    return iteration


# --- the steps --------------------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]


def _forward(progress: Progress, stage: str) -> Callable[[int, int, dict[str, float]], None]:
    """A training run's progress callback that reports under the iteration's stage name."""

    def report(step: int, total: int, entry: dict[str, float]) -> None:
        progress(stage, step, total)

    return report


def _batch_ids(iteration: Iteration) -> list[int]:
    if iteration.given_export is not None:
        return [batch["id"] for batch in iteration.given_export.manifest.get("source_batches", [])]
    return list(iteration.batches.values_list("id", flat=True))


def _has_safety(iteration: Iteration) -> bool:
    return Annotation.objects.filter(
        comparison__batch__in=iteration.batches.all(), comparison__batch__focus=Focus.SAFETY, skip_reason=""
    ).exists()


def _export(iteration: Iteration, mix: str) -> ExportRun:
    run, _ = export_create(
        created_by=iteration.created_by,
        enqueue=lambda _: None,  # built right here, in this training task
        filters={"batches": _batch_ids(iteration)},
        formats=["jsonl"],
        margin_scheme="small",
        mix=mix,
        seed=iteration.pk,
    )
    return run


def _step_export(iteration: Iteration, progress: Progress) -> None:
    if iteration.given_export is not None:
        Iteration.objects.filter(pk=iteration.pk).update(helpfulness_export=iteration.given_export)
        return
    wanted = {"helpfulness_export": ExportRun.Mix.HELPFULNESS}
    if _has_safety(iteration):
        wanted["safety_export"] = ExportRun.Mix.SAFETY
    for number, (field, mix) in enumerate(wanted.items(), start=1):
        run = getattr(iteration, field)
        if run is None:
            with transaction.atomic():
                run = _export(iteration, mix)
                Iteration.objects.filter(pk=iteration.pk).update(**{field: run})
        export_build(run_id=run.pk)
        progress("export", number, len(wanted))


def _step_reward_models(iteration: Iteration, progress: Progress) -> None:
    wanted = {"reward_helpfulness_run": (TrainingRun.Kind.REWARD_HELPFULNESS, iteration.helpfulness_export)}
    if iteration.safety_export is not None:
        wanted["reward_safety_run"] = (TrainingRun.Kind.REWARD_SAFETY, iteration.safety_export)
    for field, (kind, export) in wanted.items():
        run = getattr(iteration, field)
        if run is None:
            assert export is not None  # the export step set it
            with transaction.atomic():
                run, _ = training_run_create(
                    kind=kind,
                    export_id=export.pk,
                    base_checkpoint_id=iteration.reward_backbone_id,
                    builtin_backbone=iteration.reward_builtin_backbone,
                    config=iteration.config.get("reward", {}),
                    created_by=iteration.created_by,
                    enqueue=lambda _: None,  # executed right here
                )
                Iteration.objects.filter(pk=iteration.pk).update(**{field: run})
        training_run_execute(run_id=run.pk, on_progress=_forward(progress, kind))


def iteration_prompts_path(iteration: Iteration) -> Path:
    return Path(settings.CHECKPOINTS_ROOT) / "iterations" / f"iteration-{iteration.pk:05d}-prompts.jsonl"


def _ensure_prompts(iteration: Iteration) -> str:
    """The policy runs' (and the scan's) prompts file, written from the batches once."""
    if not iteration.prompts_path:
        path = iteration_prompts_path(iteration)
        prompts_file_write(batch_ids=_batch_ids(iteration), path=path)
        Iteration.objects.filter(pk=iteration.pk).update(prompts_path=str(path))
        iteration.prompts_path = str(path)
    return iteration.prompts_path


def _trained_reward_models(iteration: Iteration) -> tuple[Checkpoint, Checkpoint | None]:
    """The helpfulness and safety (or None) reward models the reward step made."""
    assert iteration.reward_helpfulness_run is not None
    helpfulness = iteration.reward_helpfulness_run.output_checkpoint
    safety = iteration.reward_safety_run.output_checkpoint if iteration.reward_safety_run else None
    assert helpfulness is not None
    return helpfulness, safety


def _step_temperature_scan(iteration: Iteration, progress: Progress, scan_settings: dict[str, Any]) -> None:
    helpfulness, safety = _trained_reward_models(iteration)
    iteration_temperature_scan(
        iteration=iteration,
        reward_helpfulness=helpfulness,
        reward_safety=safety,
        prompts_path=_ensure_prompts(iteration),
        on_progress=lambda done, total: progress(SCAN_CONFIG, done, total),
        settings=scan_settings,
    )


def _step_policy(iteration: Iteration, progress: Progress, policy_settings: dict[str, Any]) -> None:
    _ensure_prompts(iteration)
    assert iteration.helpfulness_export is not None
    helpfulness, safety = _trained_reward_models(iteration)
    base = iteration.base_policy
    for method in iteration.methods:
        field = f"{method}_run"
        run = getattr(iteration, field)
        if run is None:
            with transaction.atomic():
                run, _ = policy_run_create(
                    kind=method,
                    export_id=iteration.helpfulness_export.pk,
                    base_checkpoint_id=base.pk,
                    reward_helpfulness_id=helpfulness.pk,
                    reward_safety_id=safety.pk if safety else None,
                    prompts_path=iteration.prompts_path,
                    config=iteration.config.get(method, {}),
                    created_by=iteration.created_by,
                    enqueue=lambda _: None,  # executed right here
                )
                Iteration.objects.filter(pk=iteration.pk).update(**{field: run})
        run = policy_run_execute(
            run_id=run.pk,
            on_progress=_forward(progress, method),
            settings=policy_settings.get(method),
        )
        if run.output_checkpoint is None:
            raise RuntimeError(NO_POLICY)
        base = run.output_checkpoint
    Iteration.objects.filter(pk=iteration.pk).update(new_policy=base)


def _step_evaluate(iteration: Iteration, progress: Progress) -> None:
    optimised = iteration_reward_models(iteration)
    assert iteration.new_policy is not None and optimised is not None
    before = previous_iteration(iteration)
    policy_config = iteration.config.get(Method.PPO, {}) or iteration.config.get(Method.REJECTION_SAMPLING, {})
    evaluation = policies_compare(
        new=iteration.new_policy,
        previous=iteration.base_policy,
        prompts_path=Path(iteration.prompts_path),
        optimised=optimised,
        previous_models=iteration_reward_models(before) if before is not None else None,
        named=list(iteration.evaluation_reward_models.order_by("pk")),
        **({"max_new_tokens": policy_config["max_new_tokens"]} if "max_new_tokens" in policy_config else {}),
    )
    Iteration.objects.filter(pk=iteration.pk).update(evaluation=evaluation)
    progress("evaluate", 1, 1)


NEXT_STEP = {
    Iteration.Step.EXPORT: Iteration.Step.REWARD_MODELS,
    Iteration.Step.REWARD_MODELS: Iteration.Step.TEMPERATURE_SCAN,
    Iteration.Step.TEMPERATURE_SCAN: Iteration.Step.POLICY,
    Iteration.Step.POLICY: Iteration.Step.EVALUATE,
    Iteration.Step.EVALUATE: Iteration.Step.DONE,
}


def _next_step(iteration: Iteration, step: Iteration.Step) -> Iteration.Step:
    """The step after `step`; the temperature scan only when the iteration asked for it."""
    following = NEXT_STEP.get(step, Iteration.Step.DONE)
    if following == Iteration.Step.TEMPERATURE_SCAN and not iteration.scan_temperatures:
        following = NEXT_STEP[following]
    return following


def iteration_step(
    *,
    iteration_id: int,
    on_progress: Progress | None = None,
    policy_settings: dict[str, dict[str, Any]] | None = None,
) -> Iteration:
    """Run the iteration's current step and move it to the next; a done or failed iteration is left as it is.

    `policy_settings` are trainer settings per method (and for "temperature_scan") that are not hyper-parameters
    (device, test hooks). A failure is recorded on the iteration (status failed, the error), not raised.
    """
    iteration = Iteration.objects.select_related(
        "base_policy",
        "given_export",
        "helpfulness_export",
        "safety_export",
        "reward_helpfulness_run__output_checkpoint",
        "reward_safety_run__output_checkpoint",
        "temperature_scan",
        "new_policy",
        "created_by",
    ).get(pk=iteration_id)
    if iteration.status in (Iteration.Status.DONE, Iteration.Status.FAILED):
        return iteration
    Iteration.objects.filter(pk=iteration.pk).update(
        status=Iteration.Status.RUNNING, started_at=iteration.started_at or timezone.now()
    )
    progress = on_progress or (lambda stage, step, total: None)
    step = Iteration.Step(iteration.step)
    try:
        if step == Iteration.Step.EXPORT:
            _step_export(iteration, progress)
        elif step == Iteration.Step.REWARD_MODELS:
            _step_reward_models(iteration, progress)
        elif step == Iteration.Step.TEMPERATURE_SCAN:
            _step_temperature_scan(iteration, progress, (policy_settings or {}).get(SCAN_CONFIG, {}))
        elif step == Iteration.Step.POLICY:
            _step_policy(iteration, progress, policy_settings or {})
        elif step == Iteration.Step.EVALUATE:
            _step_evaluate(iteration, progress)
    except Exception as error:
        logger.exception("Iteration %s failed at step %s", iteration.pk, step)
        Iteration.objects.filter(pk=iteration.pk).update(
            status=Iteration.Status.FAILED, error=f"{step}: {type(error).__name__}: {error}"
        )
    else:
        following = _next_step(iteration, step)
        done = following == Iteration.Step.DONE
        Iteration.objects.filter(pk=iteration.pk).update(
            step=following,
            status=Iteration.Status.DONE if done else Iteration.Status.RUNNING,
            finished_at=timezone.now() if done else None,
        )
    iteration.refresh_from_db()
    return iteration


def iteration_run(
    *,
    iteration_id: int,
    on_progress: Progress | None = None,
    policy_settings: dict[str, dict[str, Any]] | None = None,
) -> Iteration:
    """Run the remaining steps here and now (the management commands); stops at done or failed."""
    while True:
        iteration = iteration_step(iteration_id=iteration_id, on_progress=on_progress, policy_settings=policy_settings)
        if iteration.status in (Iteration.Status.DONE, Iteration.Status.FAILED):
            return iteration
