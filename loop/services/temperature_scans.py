"""Temperature scans of policy checkpoints (Llama 2, Figure 8): the best reward among N samples against N, per
temperature, run on the `training` queue; and the two places their best temperature may go, when asked:
rejection sampling's `temperature: "scan"` (policy_runs.py) and a batch template's temperatures (here).

A scan is queued by a checkpoint's action (API, admin) or by an iteration's optional step. Its reward models
default to the newest registered ones and its prompts to the newest iteration's prompts file. Executing it
is idempotent: a finished scan is left as it is, and one whose files were written before a kill is read back.
"""

import json
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
from backend.errors import InvalidInput
from backend.idempotency import create_once
from loop.models import BatchTemplate, Iteration, TemperatureScan
from loop.selectors import ranked_temperatures, temperature_scan_latest
from loop.services.policy_runs import SCAN_NEEDED, settings_check, wants_scan_temperature
from loop.services.templates import template_update

POLICY_UNKNOWN = "No policy checkpoint with this id."
REWARD_UNKNOWN = "No {kind} reward-model checkpoint with this id."
REWARD_MISSING = "No helpfulness reward model is registered; train one first or name one (reward_helpfulness)."
PROMPTS_MISSING = "No prompts file at {path}."
PROMPTS_REQUIRED = "Give prompts_path: no iteration has written a prompts file yet."
TEMPERATURES_INVALID = "temperatures must be a non-empty list of distinct numbers above 0 and at most 2."
SPLIT_INVALID = "split must be test, train or all."
NOT_DONE = "Temperature scan {id} is {status}; use a finished scan."
NO_SCAN = "{name} has no finished temperature scan; scan it first."
NO_POLICY = "No policy checkpoint is registered."
COUNT_INVALID = "count must be at least 1."
SCAN_FILE = "scan.json"
SCAN_CONFIG = "temperature_scan"
"""An iteration's config key (and progress stage) for its scan's settings."""
SPLITS = ("test", "train", "all")
# The scan's scalar settings a researcher may change (training.temperature_scan.TemperatureScanConfig).
SCAN_SETTINGS: dict[str, type] = {
    "max_samples": int,
    "max_prompts": int,
    "top_p": float,
    "max_new_tokens": int,
    "batch_size": int,
    "seed": int,
}
TEMPLATE_TEMPERATURES = 2
"""How many of a scan's best temperatures a template takes by default: two, so pairs still vary temperature."""


def scan_config_check(config: Any, *, field: str = "config") -> dict[str, Any]:
    """A scan's settings: `temperatures` (a list), `split`, and the scalar SCAN_SETTINGS."""
    if not isinstance(config, dict):
        return settings_check(SCAN_SETTINGS, config, field=field)  # raises: not an object
    scalars = {key: value for key, value in config.items() if key not in ("temperatures", "split")}
    checked = dict(settings_check(SCAN_SETTINGS, scalars, field=field))
    if "temperatures" in config:
        temperatures = config["temperatures"]
        if (
            not isinstance(temperatures, list)
            or not temperatures
            or not all(isinstance(t, int | float) and not isinstance(t, bool) and 0 < t <= 2 for t in temperatures)
            or len(set(temperatures)) != len(temperatures)
        ):
            raise InvalidInput(TEMPERATURES_INVALID, field=field)
        checked["temperatures"] = [float(t) for t in temperatures]
    if "split" in config:
        if config["split"] not in SPLITS:
            raise InvalidInput(SPLIT_INVALID, field=field)
        checked["split"] = config["split"]
    for name in ("max_samples", "max_prompts"):
        if checked.get(name) == 0:
            raise InvalidInput(f"{name} must be at least 1.", field=field)
    return checked


def _newest_prompts_file() -> str:
    for path in Iteration.objects.exclude(prompts_path="").values_list("prompts_path", flat=True):
        if Path(path).is_file():
            return str(path)
    return ""


def scan_inputs(
    *, reward_helpfulness_id: int | None, reward_safety_id: int | None, prompts_path: str
) -> dict[str, Any]:
    """The reward models and prompts a scan uses: the given ones, else the newest registered reward models (the
    newest safety one too, when there is one) and the newest iteration's prompts file. Checked."""
    if reward_helpfulness_id is None:
        newest = Checkpoint.objects.filter(kind=CheckpointKind.REWARD_HELPFULNESS).first()
        if newest is None:
            raise InvalidInput(REWARD_MISSING, field="reward_helpfulness")
        reward_helpfulness_id = newest.pk
        if reward_safety_id is None:
            safety = Checkpoint.objects.filter(kind=CheckpointKind.REWARD_SAFETY).first()
            reward_safety_id = safety.pk if safety else None
    rewards = {
        "reward_helpfulness": (reward_helpfulness_id, CheckpointKind.REWARD_HELPFULNESS),
        "reward_safety": (reward_safety_id, CheckpointKind.REWARD_SAFETY),
    }
    for field, (checkpoint_id, kind) in rewards.items():
        if checkpoint_id is not None and not Checkpoint.objects.filter(pk=checkpoint_id, kind=kind).exists():
            raise InvalidInput(REWARD_UNKNOWN.format(kind=kind.label.lower()), field=field)
    prompts_path = prompts_path or _newest_prompts_file()
    if not prompts_path:
        raise InvalidInput(PROMPTS_REQUIRED, field="prompts_path")
    if not Path(prompts_path).is_file():
        raise InvalidInput(PROMPTS_MISSING.format(path=prompts_path), field="prompts_path")
    return {
        "reward_helpfulness_id": reward_helpfulness_id,
        "reward_safety_id": reward_safety_id,
        "prompts_path": prompts_path,
    }


def temperature_scan_create(
    *,
    checkpoint_id: int,
    created_by: User | None,
    enqueue: Callable[[int], None],
    reward_helpfulness_id: int | None = None,
    reward_safety_id: int | None = None,
    prompts_path: str = "",
    config: dict[str, Any] | None = None,
    client_key: str = "",
) -> tuple[TemperatureScan, bool]:
    """Validate and queue a scan of a policy checkpoint; returns (scan, created). A retry with the same key returns
    the first one."""

    def create() -> TemperatureScan:
        if not Checkpoint.objects.filter(pk=checkpoint_id, kind=CheckpointKind.POLICY).exists():
            raise InvalidInput(POLICY_UNKNOWN, field="checkpoint")
        checked = scan_config_check(config or {})
        inputs = scan_inputs(
            reward_helpfulness_id=reward_helpfulness_id, reward_safety_id=reward_safety_id, prompts_path=prompts_path
        )
        scan = TemperatureScan.objects.create(
            checkpoint_id=checkpoint_id, config=checked, created_by=created_by, client_key=client_key, **inputs
        )
        audit_record(actor=created_by, action="temperature_scan.create", target=scan, details={"config": checked})
        transaction.on_commit(partial(enqueue, scan.pk))
        return scan

    return create_once(TemperatureScan.objects, owner=created_by, client_key=client_key, create=create)


def temperature_scan_output_dir(scan: TemperatureScan) -> Path:
    return Path(settings.CHECKPOINTS_ROOT) / "temperature-scans" / f"scan-{scan.pk:05d}"


def temperature_scan_execute(
    *,
    scan_id: int,
    on_progress: Callable[[int, int], None] | None = None,
    settings: dict[str, Any] | None = None,
) -> TemperatureScan:
    """Run (or finish recording) the scan; a finished one is left as it is. `settings` are scan settings that are
    not a researcher's (device, bf16). A failure marks the scan failed and is raised."""
    from training.temperature_scan import TemperatureScanConfig, run_temperature_scan  # torch: training workers only

    scan = TemperatureScan.objects.select_related("checkpoint", "reward_helpfulness", "reward_safety").get(pk=scan_id)
    if scan.status == TemperatureScan.Status.DONE:
        return scan
    output = temperature_scan_output_dir(scan)
    config = TemperatureScanConfig(
        policy=checkpoint_local_path(checkpoint=scan.checkpoint),
        reward_helpfulness=checkpoint_local_path(checkpoint=scan.reward_helpfulness),
        reward_safety=checkpoint_local_path(checkpoint=scan.reward_safety) if scan.reward_safety else None,
        prompts=Path(scan.prompts_path),
        output_dir=output,
        **scan.config,
        **(settings or {}),
    )
    TemperatureScan.objects.filter(pk=scan.pk).update(
        status=TemperatureScan.Status.RUNNING,
        started_at=timezone.now(),
        error="",
        step=0,
        total_steps=len(config.temperatures),
    )

    def progress(done: int, total: int) -> None:
        TemperatureScan.objects.filter(pk=scan.pk).update(step=done, total_steps=total)
        if on_progress is not None:
            on_progress(done, total)

    try:
        if (output / SCAN_FILE).is_file():  # written whole before a kill: record it
            result = json.loads((output / SCAN_FILE).read_text())
        else:
            result = run_temperature_scan(config, progress=progress)
    except Exception as error:
        TemperatureScan.objects.filter(pk=scan.pk).update(
            status=TemperatureScan.Status.FAILED, error=f"{type(error).__name__}: {error}", finished_at=timezone.now()
        )
        raise
    TemperatureScan.objects.filter(pk=scan.pk).update(
        status=TemperatureScan.Status.DONE,
        result={key: value for key, value in result.items() if key != "config"},
        output_dir=str(output),
        step=len(config.temperatures),
        finished_at=timezone.now(),
    )
    scan.refresh_from_db()
    return scan


def scan_temperature_check(base_policy_id: int, rejection_sampling: dict[str, Any], *, field: str) -> None:
    """Rejection sampling's temperature "scan" needs a finished scan of its base policy (when nothing scans it
    before the run)."""
    wanted = wants_scan_temperature(TrainingRun.Kind.REJECTION_SAMPLING, rejection_sampling)
    if wanted and temperature_scan_latest(checkpoint_id=base_policy_id) is None:
        name = Checkpoint.objects.get(pk=base_policy_id).name
        raise InvalidInput(SCAN_NEEDED.format(name=name), field=f"{field}.rejection_sampling")


def iteration_temperature_scan(
    *,
    iteration: Iteration,
    reward_helpfulness: Checkpoint,
    reward_safety: Checkpoint | None,
    prompts_path: str,
    on_progress: Callable[[int, int], None],
    settings: dict[str, Any],
) -> TemperatureScan:
    """An iteration's scan step: its base policy scanned with its new reward models on its prompts (the held-out
    ones by default), made once and recorded on the iteration, then run (or left, when finished). The scan's
    max_new_tokens defaults to rejection sampling's, so it samples as the run will."""
    scan = iteration.temperature_scan
    if scan is None:
        config = dict(iteration.config.get(SCAN_CONFIG, {}))
        tokens = iteration.config.get(TrainingRun.Kind.REJECTION_SAMPLING, {}).get("max_new_tokens")
        if tokens is not None:
            config.setdefault("max_new_tokens", tokens)
        with transaction.atomic():
            scan, _ = temperature_scan_create(
                checkpoint_id=iteration.base_policy_id,
                reward_helpfulness_id=reward_helpfulness.pk,
                reward_safety_id=reward_safety.pk if reward_safety else None,
                prompts_path=prompts_path,
                config=config,
                created_by=iteration.created_by,
                enqueue=lambda _: None,  # executed right here
            )
            Iteration.objects.filter(pk=iteration.pk).update(temperature_scan=scan)
    return temperature_scan_execute(scan_id=scan.pk, on_progress=on_progress, settings=settings)


def scan_for_checkpoint(checkpoint: Checkpoint) -> TemperatureScan:
    """The checkpoint's newest finished scan, or a 400 that says to scan it first."""
    scan = temperature_scan_latest(checkpoint_id=checkpoint.pk)
    if scan is None:
        raise InvalidInput(NO_SCAN.format(name=checkpoint.name), field="temperature_scan")
    return scan


def template_temperatures_from_scan(
    *,
    template: BatchTemplate,
    actor: User | None,
    scan: TemperatureScan | None = None,
    count: int = TEMPLATE_TEMPERATURES,
) -> BatchTemplate:
    """Set the template's temperatures to the scan's `count` best (in increasing order), from next week's batch
    on. Without a scan: the newest finished scan of the newest policy checkpoint, which the weekly batch samples."""
    if count < 1:
        raise InvalidInput(COUNT_INVALID, field="count")
    if scan is None:
        newest = Checkpoint.objects.filter(kind=CheckpointKind.POLICY).first()
        if newest is None:
            raise InvalidInput(NO_POLICY, field="scan")
        scan = scan_for_checkpoint(newest)
    if scan.status != TemperatureScan.Status.DONE:
        raise InvalidInput(NOT_DONE.format(id=scan.pk, status=scan.status), field="scan")
    temperatures = sorted(ranked_temperatures(scan=scan)[:count])
    template = template_update(template=template, actor=actor, temperatures=temperatures)
    audit_record(
        actor=actor,
        action="batch_template.temperatures_from_scan",
        target=template,
        details={"scan": scan.pk, "temperatures": temperatures},
    )
    return template
