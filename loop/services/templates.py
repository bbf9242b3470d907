"""Batch templates and the weekly job: each active template's batch for the ISO week, sampled from the newest
policy checkpoint and the one before it (so each batch also compares the two), opened; last week's closed."""

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from backend.audit.services import audit_record
from backend.batches.models import Batch, Comparison, Focus, Prompt, PromptSource
from backend.batches.services.batches import (
    FOCUS_UNKNOWN,
    MAX_NEW_TOKENS_INVALID,
    MAX_OVERLAP,
    OVERLAP_INVALID,
    QUOTA_INVALID,
    TEMPERATURES_INVALID,
    batch_close,
    batch_create,
    batch_open,
    iso_week_of,
)
from backend.checkpoints.models import Checkpoint, CheckpointKind
from backend.errors import InvalidInput, ServiceError
from loop.models import BatchTemplate, Iteration, WeeklyBatch
from sampler.services import batch_start_sampling, prompt_chunks
from sampler.tasks import enqueue_chunk

logger = logging.getLogger(__name__)

NAME_REQUIRED = "Give the template a name (letters, digits, '-' and '_')."
NAME_TAKEN = "A template with this name exists with different settings."
SIZE_INVALID = "size (comparisons per batch) must be at least 1."
SOURCE_UNKNOWN = "prompt_source must be pool, tags or annotator."
TAGS_INVALID = "prompt_tags must be a non-empty list of strings when prompt_source is 'tags'."
HELD_OUT_INVALID = "held_out_size must be 0 or more."
NO_POLICY = "No policy checkpoint is registered; register one before making batches."
NO_TAGGED_PROMPTS = "No unused {focus} pool prompts carry all of the tags {tags}."
DEFAULT_TEMPERATURES = [0.7, 1.0]

Enqueue = Callable[[int, list[int]], None]


def template_check(values: dict[str, Any]) -> dict[str, Any]:
    """Validate a template's settings; returns them normalised."""
    name = str(values.get("name", "")).strip()
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise InvalidInput(NAME_REQUIRED, field="name")
    if values.get("focus", Focus.HELPFULNESS) not in Focus.values:
        raise InvalidInput(FOCUS_UNKNOWN, field="focus")
    size = values.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InvalidInput(SIZE_INVALID, field="size")
    overlap = values.get("overlap", 1)
    if not isinstance(overlap, int) or not 1 <= overlap <= MAX_OVERLAP:
        raise InvalidInput(OVERLAP_INVALID, field="overlap")
    temperatures = values.get("temperatures") or DEFAULT_TEMPERATURES
    if not isinstance(temperatures, list) or not all(
        isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t <= 2 for t in temperatures
    ):
        raise InvalidInput(TEMPERATURES_INVALID, field="temperatures")
    max_new_tokens = values.get("max_new_tokens", 512)
    if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= 8192:
        raise InvalidInput(MAX_NEW_TOKENS_INVALID, field="max_new_tokens")
    source = values.get("prompt_source", BatchTemplate.PromptSource.POOL)
    if source not in BatchTemplate.PromptSource.values:
        raise InvalidInput(SOURCE_UNKNOWN, field="prompt_source")
    tags = values.get("prompt_tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise InvalidInput(TAGS_INVALID, field="prompt_tags")
    if source == BatchTemplate.PromptSource.TAGS and not tags:
        raise InvalidInput(TAGS_INVALID, field="prompt_tags")
    quota = values.get("annotator_quota")
    if quota is not None and (not isinstance(quota, int) or quota < 1):
        raise InvalidInput(QUOTA_INVALID, field="annotator_quota")
    held_out = values.get("held_out_size", 1000)
    if not isinstance(held_out, int) or held_out < 0:
        raise InvalidInput(HELD_OUT_INVALID, field="held_out_size")
    return {
        "name": name,
        "focus": values.get("focus", Focus.HELPFULNESS),
        "size": size,
        "overlap": overlap,
        "temperatures": [float(t) for t in temperatures],
        "max_new_tokens": max_new_tokens,
        "guidelines": str(values.get("guidelines") or "").strip(),
        "prompt_source": source,
        "prompt_tags": [t.strip() for t in tags],
        "annotator_quota": quota,
        "held_out_size": held_out,
        "active": bool(values.get("active", True)),
    }


def template_create(*, created_by: User | None, **values: Any) -> tuple[BatchTemplate, bool]:
    """Validate and save a template; returns (template, created). The same name and settings return it again."""
    fields = template_check(values)
    with transaction.atomic():
        template, created = BatchTemplate.objects.select_for_update().get_or_create(
            name=fields["name"], defaults={**fields, "created_by": created_by}
        )
        if created:
            audit_record(actor=created_by, action="batch_template.create", target=template, details=fields)
            return template, True
    if any(getattr(template, key) != value for key, value in fields.items()):
        raise InvalidInput(NAME_TAKEN, field="name")
    return template, False


def template_update(*, template: BatchTemplate, actor: User | None, **values: Any) -> BatchTemplate:
    """Change a template's settings (from next week's batch on)."""
    current = {key: getattr(template, key) for key in template_check({"name": template.name, "size": template.size})}
    fields = template_check({**current, **values})
    changed = {key: value for key, value in fields.items() if getattr(template, key) != value}
    if changed:
        with transaction.atomic():
            BatchTemplate.objects.filter(pk=template.pk).update(**changed)
            template.refresh_from_db()
            audit_record(actor=actor, action="batch_template.change", target=template, details=changed)
    return template


def default_sampling_plan() -> list[Checkpoint]:
    """The newest policy checkpoint and the one before it (just one, when only one is registered).

    "The one before it" is the policy the loop trained it from when an iteration made it (an iteration that
    runs rejection sampling then PPO registers the intermediate too, which is not the previous policy),
    otherwise the next newest policy checkpoint.
    """
    policies = Checkpoint.objects.filter(kind=CheckpointKind.POLICY).order_by("-created_at", "-id")
    newest = policies.first()
    if newest is None:
        return []
    origin = Iteration.objects.filter(new_policy=newest, status=Iteration.Status.DONE).first()
    previous = origin.base_policy if origin else policies.exclude(pk=newest.pk).first()
    return [newest, previous] if previous else [newest]


def _week_start(moment: datetime) -> datetime:
    """Monday 00:00 UTC of the moment's ISO week."""
    moment = moment.astimezone(UTC)
    day = moment.date() - timedelta(days=moment.isoweekday() - 1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _tagged_prompts(batch: Batch, tags: list[str], limit: int) -> list[int]:
    """Unused pool prompts of the batch's focus that carry every tag, oldest first."""
    candidates = Prompt.objects.filter(source=PromptSource.POOL, is_safety=batch.focus == Focus.SAFETY).exclude(
        comparisons__batch=batch
    )
    wanted = set(tags)
    chosen = []
    for prompt_id, prompt_tags in candidates.order_by("id").values_list("id", "tags").iterator():
        if wanted <= set(prompt_tags or []):
            chosen.append(prompt_id)
            if len(chosen) >= limit:
                break
    return chosen


def _start_sampling(template: BatchTemplate, batch: Batch, enqueue: Enqueue) -> None:
    """Queue the batch's pre-sampling from the template's prompt source; a refusal is kept on the batch."""
    try:
        if template.prompt_source != BatchTemplate.PromptSource.TAGS:
            batch_start_sampling(batch=batch, enqueue=enqueue)
            return
        missing = batch.target_comparisons - Comparison.objects.filter(batch=batch).count()
        prompt_ids = _tagged_prompts(batch, template.prompt_tags, missing)
        if not prompt_ids:
            raise InvalidInput(NO_TAGGED_PROMPTS.format(focus=batch.focus, tags=", ".join(template.prompt_tags)))
        with transaction.atomic():
            Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.SAMPLING, sampling_error="")
            for chunk in prompt_chunks(prompt_ids):
                transaction.on_commit(partial(enqueue, batch.pk, chunk))
    except ServiceError as error:
        Batch.objects.filter(pk=batch.pk).update(sampling_error=error.message)


def weekly_batch_make(*, template: BatchTemplate, now: datetime, enqueue: Enqueue) -> WeeklyBatch:
    """This week's batch of the template: created once (whatever the retries), sampled, opened when it has pairs.

    A batch whose annotators write the prompts (prompt_source 'annotator') samples nothing from the pool: it
    opens at once, and each prompt written gets its pair live.
    """
    week = iso_week_of(now)
    with transaction.atomic():
        BatchTemplate.objects.select_for_update().get(pk=template.pk)
        weekly = WeeklyBatch.objects.filter(template=template, iso_week=week).select_related("batch").first()
        if weekly is None:
            plan = default_sampling_plan()
            if not plan:
                raise InvalidInput(NO_POLICY, field="checkpoints")
            opens = _week_start(now)
            batch, _ = batch_create(
                name=f"{template.name}-{week}",
                target_comparisons=template.size,
                created_by=template.created_by,
                focus=template.focus,
                iso_week=week,
                checkpoint_ids=[checkpoint.pk for checkpoint in plan],
                temperatures=template.temperatures,
                max_new_tokens=template.max_new_tokens,
                overlap=template.overlap,
                annotator_quota=template.annotator_quota,
                held_out_size=template.held_out_size,
                opens_at=opens,
                closes_at=opens + timedelta(days=7),
                guidelines=template.guidelines,
                annotators_write_prompts=template.prompt_source == BatchTemplate.PromptSource.ANNOTATOR,
            )
            weekly = WeeklyBatch.objects.create(template=template, iso_week=week, batch=batch)
    batch = Batch.objects.get(pk=weekly.batch_id)
    if batch.annotators_write_prompts:
        # Its page serves only the live pairs of the prompts its annotators write, never pool pairs: none is
        # sampled, and it opens at once (batch_create has checked that its plan can vary a pair).
        if batch.status in (Batch.Status.DRAFT, Batch.Status.SAMPLING):
            batch_open(batch=batch, now=now)
        return weekly
    if batch.status == Batch.Status.DRAFT:
        _start_sampling(template, batch, enqueue)
        batch.refresh_from_db()
    if batch.status == Batch.Status.SAMPLING and Comparison.objects.filter(batch=batch).exists():
        batch_open(batch=batch, now=now)
    return weekly


def weekly_batches_run(*, now: datetime | None = None, enqueue: Enqueue | None = None) -> list[WeeklyBatch]:
    """For every active template: make this ISO week's batch and close the template's batches of past weeks.

    Running it twice in a week makes one batch per template. A template that fails is logged and skipped.
    """
    now = now or timezone.now()
    week = iso_week_of(now)
    made = []
    for template in BatchTemplate.objects.filter(active=True):
        try:
            made.append(weekly_batch_make(template=template, now=now, enqueue=enqueue or enqueue_chunk))
        except ServiceError as error:
            logger.warning("Weekly batch of template %s not made: %s", template.name, error.message)
        for past in WeeklyBatch.objects.filter(template=template, iso_week__lt=week).exclude(
            batch__status=Batch.Status.CLOSED
        ):
            batch_close(batch=past.batch, now=now)
    return made
