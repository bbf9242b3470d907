"""Creating, opening and closing weekly batches, and fixing each batch's held-out test set."""

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from backend.audit.services import audit_record
from backend.batches.guidelines import DEFAULT_GUIDELINES
from backend.batches.models import Batch, Comparison, Focus
from backend.batches.services.gold import check_gold_rate
from backend.checkpoints.models import Checkpoint, CheckpointKind
from backend.errors import Conflict, InvalidInput

NAME_REQUIRED = "Give the batch a name."
NAME_TAKEN = "A batch with this name already exists with different settings."
ISO_WEEK_FORMAT = "Use the ISO week form YYYY-Www, e.g. 2026-W48."
FOCUS_UNKNOWN = "Focus must be 'helpfulness' or 'safety'."
TEMPERATURES_INVALID = "Temperatures must be a list of numbers, each above 0 and at most 2."
TOP_P_INVALID = "top_p must be above 0 and at most 1."
MAX_NEW_TOKENS_INVALID = "max_new_tokens must be between 1 and 8192."
CHECKPOINT_UNKNOWN = "Unknown checkpoint id(s): {ids}."
CHECKPOINT_NOT_POLICY = "Only policy checkpoints can be sampled from; {names} are reward models."
PLAN_NOT_DIVERSE = (
    "A pair must come from two different checkpoints or two different temperatures: "
    "give at least two checkpoints or at least two temperatures."
)
TARGET_INVALID = "target_comparisons must be at least 1."
OVERLAP_INVALID = "overlap (annotators per comparison) must be between 1 and 10."
QUOTA_INVALID = "annotator_quota must be at least 1, or left empty for no limit."
HELD_OUT_SIZE_INVALID = "held_out_size must be 0 or more."
HELD_OUT_FRACTION_INVALID = "held_out_fraction must be between 0 and 0.5."
CLOSES_BEFORE_OPENS = "closes_at must be after opens_at."
BATCH_CLOSED = "The batch is closed; it cannot be opened again."
BATCH_EMPTY = "The batch has no comparisons yet; sample or add some before opening it."
SELECTION_UNKNOWN = "selection must be one of: " + ", ".join(Batch.Selection.values) + "."
SELECTION_CHECKPOINT_REQUIRED = "selection 'uncertain' needs selection_checkpoint: the reward model that scores pairs."
SELECTION_CHECKPOINT_NOT_REWARD = "selection_checkpoint must be a registered reward-model checkpoint."
REWARD_KINDS = (CheckpointKind.REWARD_HELPFULNESS, CheckpointKind.REWARD_SAFETY)

_ISO_WEEK = re.compile(r"^\d{4}-W(0[1-9]|[1-4]\d|5[0-3])$")
MAX_OVERLAP = 10


def iso_week_of(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _check_temperatures(temperatures: Sequence[Any]) -> list[float]:
    if not isinstance(temperatures, (list, tuple)):
        raise InvalidInput(TEMPERATURES_INVALID, field="temperatures")
    checked = []
    for value in temperatures:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 2:
            raise InvalidInput(TEMPERATURES_INVALID, field="temperatures")
        checked.append(float(value))
    return checked


def _check_checkpoints(checkpoint_ids: Sequence[int]) -> list[Checkpoint]:
    unique_ids = sorted(set(checkpoint_ids))
    found = list(Checkpoint.objects.filter(pk__in=unique_ids))
    missing = set(unique_ids) - {c.pk for c in found}
    if missing:
        raise InvalidInput(CHECKPOINT_UNKNOWN.format(ids=", ".join(map(str, sorted(missing)))), field="checkpoints")
    not_policy = [c.name for c in found if c.kind != CheckpointKind.POLICY]
    if not_policy:
        raise InvalidInput(CHECKPOINT_NOT_POLICY.format(names=", ".join(not_policy)), field="checkpoints")
    return found


def _check_selection(selection: str, checkpoint_id: int | None) -> int | None:
    if selection not in Batch.Selection.values:
        raise InvalidInput(SELECTION_UNKNOWN, field="selection")
    if checkpoint_id is None:
        if selection == Batch.Selection.UNCERTAIN:
            raise InvalidInput(SELECTION_CHECKPOINT_REQUIRED, field="selection_checkpoint")
        return None
    if not Checkpoint.objects.filter(pk=checkpoint_id, kind__in=REWARD_KINDS).exists():
        raise InvalidInput(SELECTION_CHECKPOINT_NOT_REWARD, field="selection_checkpoint")
    return checkpoint_id


def _check_sampling(
    checkpoints: list[Checkpoint], temperatures: list[float], *, top_p: float, max_new_tokens: int
) -> None:
    if not 0 < top_p <= 1:
        raise InvalidInput(TOP_P_INVALID, field="top_p")
    if not 1 <= max_new_tokens <= 8192:
        raise InvalidInput(MAX_NEW_TOKENS_INVALID, field="max_new_tokens")
    if checkpoints and len(checkpoints) < 2 and len(set(temperatures)) < 2:
        raise InvalidInput(PLAN_NOT_DIVERSE, field="checkpoints")


def _check_sizes(
    *, target_comparisons: int, overlap: int, annotator_quota: int | None, held_out_size: int, held_out_fraction: float
) -> None:
    if target_comparisons < 1:
        raise InvalidInput(TARGET_INVALID, field="target_comparisons")
    if not 1 <= overlap <= MAX_OVERLAP:
        raise InvalidInput(OVERLAP_INVALID, field="overlap")
    if annotator_quota is not None and annotator_quota < 1:
        raise InvalidInput(QUOTA_INVALID, field="annotator_quota")
    if held_out_size < 0:
        raise InvalidInput(HELD_OUT_SIZE_INVALID, field="held_out_size")
    if not 0 <= held_out_fraction <= 0.5:
        raise InvalidInput(HELD_OUT_FRACTION_INVALID, field="held_out_fraction")


def batch_create(
    *,
    name: str,
    target_comparisons: int,
    created_by: User | None,
    focus: str = Focus.HELPFULNESS,
    iso_week: str = "",
    checkpoint_ids: Sequence[int] = (),
    temperatures: Sequence[float] = (),
    top_p: float = 0.9,
    max_new_tokens: int = 512,
    overlap: int = 1,
    annotator_quota: int | None = None,
    held_out_size: int = 1000,
    held_out_fraction: float = 0.1,
    opens_at: datetime | None = None,
    closes_at: datetime | None = None,
    guidelines: str = "",
    annotators_write_prompts: bool = False,
    gold_rate: float = 0.05,
    selection: str = Batch.Selection.BALANCED,
    selection_checkpoint_id: int | None = None,
) -> tuple[Batch, bool]:
    """Create a draft batch; returns (batch, created).

    A retried create (same name, same settings) returns the existing batch instead of failing.
    """
    name = name.strip()
    if not name:
        raise InvalidInput(NAME_REQUIRED, field="name")
    if focus not in Focus.values:
        raise InvalidInput(FOCUS_UNKNOWN, field="focus")
    iso_week = iso_week or iso_week_of(opens_at or timezone.now())
    if not _ISO_WEEK.match(iso_week):
        raise InvalidInput(ISO_WEEK_FORMAT, field="iso_week")
    checked_temperatures = _check_temperatures(temperatures)
    checkpoints = _check_checkpoints(checkpoint_ids)
    _check_sampling(checkpoints, checked_temperatures, top_p=top_p, max_new_tokens=max_new_tokens)
    _check_sizes(
        target_comparisons=target_comparisons,
        overlap=overlap,
        annotator_quota=annotator_quota,
        held_out_size=held_out_size,
        held_out_fraction=held_out_fraction,
    )
    if opens_at and closes_at and closes_at <= opens_at:
        raise InvalidInput(CLOSES_BEFORE_OPENS, field="closes_at")
    gold_rate = check_gold_rate(gold_rate)
    selection_checkpoint_id = _check_selection(selection, selection_checkpoint_id)

    fields = {
        "iso_week": iso_week,
        "focus": focus,
        "temperatures": checked_temperatures,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "target_comparisons": target_comparisons,
        "overlap": overlap,
        "annotator_quota": annotator_quota,
        "held_out_size": held_out_size,
        "held_out_fraction": held_out_fraction,
        "opens_at": opens_at,
        "closes_at": closes_at,
        "guidelines": guidelines.strip() or DEFAULT_GUIDELINES[Focus(focus)],
        "annotators_write_prompts": annotators_write_prompts,
        "gold_rate": gold_rate,
        "selection": selection,
        "selection_checkpoint_id": selection_checkpoint_id,
    }
    with transaction.atomic():
        batch, created = Batch.objects.select_for_update().get_or_create(
            name=name, defaults={**fields, "created_by": created_by}
        )
        if created:
            batch.checkpoints.set(checkpoints)
            audit_record(actor=created_by, action="batch.create", target=batch)
            return batch, True
    if not _same_settings(batch, fields, checkpoints):
        raise InvalidInput(NAME_TAKEN, field="name")
    return batch, False


def _same_settings(batch: Batch, fields: dict[str, Any], checkpoints: list[Checkpoint]) -> bool:
    """Whether a retried create asks for the batch that its name already holds."""
    same_checkpoints = {c.pk for c in batch.checkpoints.all()} == {c.pk for c in checkpoints}
    return same_checkpoints and all(getattr(batch, key) == value for key, value in fields.items())


def batch_open(*, batch: Batch, now: datetime | None = None, actor: User | None = None) -> Batch:
    """Open a batch to annotators (its pairs' splits were decided when each was made). Opening an open batch
    changes nothing.

    `actor` is who opened it, for the audit log (None: the schedule).
    """
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch.pk)
        if batch.status == Batch.Status.OPEN:
            return batch
        if batch.status == Batch.Status.CLOSED:
            raise Conflict(BATCH_CLOSED)
        # Annotators who write their own prompts get live pairs: such a batch may open with none sampled.
        if not batch.annotators_write_prompts and not Comparison.objects.filter(batch=batch).exists():
            raise Conflict(BATCH_EMPTY)
        batch.status = Batch.Status.OPEN
        batch.opened_at = now or timezone.now()
        batch.save(update_fields=["status", "opened_at"])
        audit_record(actor=actor, action="batch.open", target=batch)
    return batch


def batch_close(*, batch: Batch, now: datetime | None = None, actor: User | None = None) -> Batch:
    """Close a batch: no new leases. Closing a closed batch changes nothing. `actor`: as for batch_open."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch.pk)
        if batch.status != Batch.Status.CLOSED:
            batch.status = Batch.Status.CLOSED
            batch.closed_at = now or timezone.now()
            batch.save(update_fields=["status", "closed_at"])
            audit_record(actor=actor, action="batch.close", target=batch)
    return batch


def batches_sync_schedule(*, now: datetime | None = None) -> dict[str, list[int]]:
    """Open batches whose opening time has come and close those whose closing time has passed."""
    now = now or timezone.now()
    opened, closed = [], []
    due_to_open = Batch.objects.filter(
        status__in=[Batch.Status.DRAFT, Batch.Status.SAMPLING], opens_at__lte=now
    ).exclude(closes_at__lte=now)
    for batch in due_to_open:
        # A batch whose annotators write the prompts needs no pairs first: theirs are sampled live.
        if batch.annotators_write_prompts or Comparison.objects.filter(batch=batch).exists():
            batch_open(batch=batch, now=now)
            opened.append(batch.pk)
    for batch in Batch.objects.filter(status=Batch.Status.OPEN, closes_at__lte=now):
        batch_close(batch=batch, now=now)
        closed.append(batch.pk)
    return {"opened": opened, "closed": closed}
