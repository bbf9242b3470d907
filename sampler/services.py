"""Sampling work for batches: pre-sampling from the prompt pool, and live pairs for written prompts.

The Celery tasks in `sampler.tasks` take ids and call these; enqueueing happens on commit, so a
task never looks for a row that is not there yet.
"""

import functools
import math
from collections.abc import Callable
from functools import partial

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from backend.audit.services import audit_record
from backend.batches.models import Assignment, Batch, Comparison, Focus, LivePair, Prompt, PromptSource
from backend.batches.services.annotations import annotator_done_count, assignment_lease_comparison
from backend.batches.services.prompts import prompt_create
from backend.checkpoints.selectors import checkpoint_local_path
from backend.errors import Conflict, InvalidInput, NotFound
from sampler.engines import Engine, EngineError, get_engine
from sampler.engines.base import CHECKPOINT_LOAD_FAILED
from sampler.planning import OVERSAMPLE, PLAN_NEEDS_VARIETY
from sampler.sampling import PairScorer, Uncertainty, batch_sample_prompts

BATCH_NOT_SAMPLABLE = "Only a draft batch can start sampling (or a sampling one, to resume)."
PLAN_MISSING = "The batch's sampling plan has no checkpoints; add policy checkpoints first."
POOL_EMPTY = "The prompt pool has no unused {focus} prompts for this batch; import some first."
LIVE_NOT_ALLOWED = "This batch does not take annotator-written prompts."
LIVE_BATCH_NOT_OPEN = "This batch is not open for annotation."
PROMPT_NOT_YOURS = "No such prompt of yours."
LIVE_QUOTA_REACHED = (
    "You have reached this batch's limit of {quota} judgements per annotator (pairs you have been given but not "
    "judged yet count too), so no new pair can be sampled for you."
)
# What an annotator is told of a failed live pair: the engine's error names checkpoints and paths, which
# annotators must never see (staff read it on the batch and in the admin).
LIVE_PAIR_FAILED = "The pair could not be sampled; try again or write another prompt."
SELECTION_CHECKPOINT_MISSING = "Uncertainty selection needs a reward-model checkpoint (selection_checkpoint)."


def sampler_engine() -> tuple[str, Engine]:
    """The engine this process samples with, from the SAMPLER_ENGINE and SAMPLER_ENGINE_OPTIONS settings."""
    name = settings.SAMPLER_ENGINE
    return name, get_engine(name, **settings.SAMPLER_ENGINE_OPTIONS)


def prompt_chunks(prompt_ids: list[int], chunk_size: int | None = None) -> list[list[int]]:
    """The prompts cut into sampling tasks of `chunk_size` (default: the SAMPLER_CHUNK_PROMPTS setting)."""
    size = chunk_size or settings.SAMPLER_CHUNK_PROMPTS
    return [prompt_ids[start : start + size] for start in range(0, len(prompt_ids), size)]


def _pool_for(batch: Batch, limit: int) -> list[Prompt]:
    """Unused pool prompts of the batch's focus, least-sampled first, oldest first."""
    return list(
        Prompt.objects.filter(source=PromptSource.POOL, is_safety=batch.focus == Focus.SAFETY)
        .exclude(comparisons__batch=batch)
        .annotate(uses=Count("comparisons"))
        .order_by("uses", "id")[:limit]
    )


def batch_start_sampling(
    *,
    batch: Batch,
    enqueue: Callable[[int, list[int]], None],
    chunk_size: int | None = None,
    actor: User | None = None,
) -> dict[str, int]:
    """Move a draft batch to sampling and queue its prompts in chunks; resuming a sampling batch queues the rest.

    `enqueue(batch_id, prompt_ids)` sends one chunk (the task's delay). Returns counts of prompts and chunks.
    """
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch.pk)
        if batch.status not in (Batch.Status.DRAFT, Batch.Status.SAMPLING):
            raise Conflict(BATCH_NOT_SAMPLABLE)
        checkpoint_ids = list(batch.checkpoints.values_list("id", flat=True))
        if not checkpoint_ids:
            raise InvalidInput(PLAN_MISSING, field="checkpoints")
        if len(checkpoint_ids) < 2 and len(set(batch.temperatures)) < 2:
            raise InvalidInput(PLAN_NEEDS_VARIETY, field="temperatures")
        if batch.selection == Batch.Selection.UNCERTAIN and batch.selection_checkpoint_id is None:
            raise InvalidInput(SELECTION_CHECKPOINT_MISSING, field="selection_checkpoint")
        missing = batch.target_comparisons - Comparison.objects.filter(batch=batch, is_gold=False).count()
        # Uncertainty selection samples OVERSAMPLE candidate pairs (one per prompt) for each pair it keeps.
        factor = OVERSAMPLE if batch.selection == Batch.Selection.UNCERTAIN else 1
        prompts = _pool_for(batch, max(missing, 0) * factor)
        if missing > 0 and not prompts:
            raise InvalidInput(POOL_EMPTY.format(focus=batch.focus), field="target_comparisons")
        batch.status = Batch.Status.SAMPLING
        batch.sampling_error = ""
        batch.save(update_fields=["status", "sampling_error"])
        audit_record(actor=actor, action="batch.sampling_start", target=batch, details={"prompts": len(prompts)})
        chunks = prompt_chunks([p.pk for p in prompts], chunk_size)
        for chunk in chunks:
            transaction.on_commit(partial(enqueue, batch.pk, chunk))
    return {"prompts": len(prompts), "chunks": len(chunks)}


@functools.lru_cache(maxsize=2)
def _reward_scorer(path: str) -> PairScorer:
    """A loaded reward model, kept for the worker's next chunks; one that fails to load is an EngineError."""
    from sampler.engines.reward import RewardScorer  # torch: only in the sampler worker

    try:
        return RewardScorer(path)
    except Exception as exc:  # any failure to load is the checkpoint's: report it on the batch with the path
        reason = f"{type(exc).__name__}: {exc}"
        raise EngineError(CHECKPOINT_LOAD_FAILED.format(checkpoint=path, reason=reason)) from exc


def _uncertainty(batch: Batch, candidates: int) -> Uncertainty | None:
    """For an 'uncertain' batch: keep one pair in OVERSAMPLE, never past the target."""
    if batch.selection != Batch.Selection.UNCERTAIN or batch.selection_checkpoint is None:
        return None
    missing = batch.target_comparisons - Comparison.objects.filter(batch=batch, is_gold=False).count()
    keep = min(math.ceil(candidates / OVERSAMPLE), max(missing, 0))
    path = str(checkpoint_local_path(checkpoint=batch.selection_checkpoint))
    return Uncertainty(scorer=_reward_scorer(path), checkpoint=batch.selection_checkpoint, keep=keep)


def batch_sample_chunk(*, batch_id: int, prompt_ids: list[int]) -> int:
    """Sample pairs for these prompts; returns how many pairs the batch gained.

    Safe to run twice (a redelivered task): prompts already paired in the batch are left alone. A
    checkpoint that fails to load is recorded on the batch as `sampling_error`, not raised.
    """
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None or batch.status not in (Batch.Status.SAMPLING, Batch.Status.OPEN):
        return 0
    done = set(Comparison.objects.filter(batch=batch, prompt_id__in=prompt_ids).values_list("prompt_id", flat=True))
    prompts = list(Prompt.objects.filter(pk__in=set(prompt_ids) - done).order_by("id"))
    if not prompts:
        return 0
    engine_name, engine = sampler_engine()
    try:
        pairs = batch_sample_prompts(
            batch=batch,
            prompts=prompts,
            engine=engine,
            engine_name=engine_name,
            uncertainty=_uncertainty(batch, len(prompts)),
        )
    except EngineError as error:
        Batch.objects.filter(pk=batch.pk).update(sampling_error=str(error))
        return 0
    if Comparison.objects.filter(batch=batch, is_gold=False).count() >= batch.target_comparisons:
        Batch.objects.filter(pk=batch.pk, sampled_at__isnull=True).update(sampled_at=timezone.now())
    return len(pairs)


def live_pair_request(
    *,
    batch: Batch,
    annotator: User,
    enqueue: Callable[[int], None],
    text: str = "",
    prompt_id: int | None = None,
    client_key: str = "",
) -> tuple[LivePair, bool]:
    """Ask for a pair to be sampled now for a prompt the annotator wrote (new `text`, or a `prompt_id`
    of theirs such as a dialogue's next turn). Returns (live pair, created); asking again returns the same one.
    """
    if not batch.annotators_write_prompts:
        raise Conflict(LIVE_NOT_ALLOWED)
    if batch.status != Batch.Status.OPEN:
        raise Conflict(LIVE_BATCH_NOT_OPEN)
    try:
        with transaction.atomic():
            # The annotator's row lock orders their own requests, so two at once cannot both pass the quota.
            User.objects.select_for_update().only("pk").get(pk=annotator.pk)
            if prompt_id is not None:
                prompt = Prompt.objects.filter(pk=prompt_id, author=annotator).first()
                if prompt is None:
                    raise NotFound(PROMPT_NOT_YOURS)
            else:
                prompt, _ = prompt_create(
                    text=text,
                    author=annotator,
                    source=PromptSource.ANNOTATOR,
                    is_safety=batch.focus == Focus.SAFETY,
                    client_key=client_key,
                )
            existing = LivePair.objects.filter(batch=batch, prompt=prompt).first()
            if existing is not None:
                return existing, False  # a retried request: the same pair, whatever the quota says now
            # Refused before anything is stored: a new prompt written here is rolled back with the refusal.
            _check_live_quota(batch, annotator, counting_pending=True)
            live_pair = LivePair.objects.create(batch=batch, prompt=prompt, requested_by=annotator)
            transaction.on_commit(partial(enqueue, live_pair.pk))
    except IntegrityError:
        return LivePair.objects.get(batch=batch, prompt=prompt), False
    return live_pair, True


def _check_live_quota(batch: Batch, annotator: User, *, counting_pending: bool) -> None:
    """Refuse a new live pair to an annotator whose judgements, with the pairs they hold, reach the quota.

    The quota counts judgements (as `assignment_lease_next` does); a live pair is leased straight to its
    author, so the leases they hold and (at request time) their pairs still being sampled count too.
    """
    if batch.annotator_quota is None:
        return
    now = timezone.now()
    held = Assignment.objects.filter(
        annotator=annotator, comparison__batch=batch, status=Assignment.Status.LEASED, expires_at__gt=now
    ).count()
    pending = (
        LivePair.objects.filter(batch=batch, requested_by=annotator, status=LivePair.Status.PENDING).count()
        if counting_pending
        else 0
    )
    if annotator_done_count(batch=batch, annotator=annotator) + held + pending >= batch.annotator_quota:
        raise Conflict(LIVE_QUOTA_REACHED.format(quota=batch.annotator_quota))


def live_pair_public_error(live_pair: LivePair) -> str:
    """The reason a failed live pair's author is given: the quota's message, or a generic one (never the
    engine's error, which names checkpoints and paths)."""
    if live_pair.status != LivePair.Status.FAILED:
        return ""
    quota = live_pair.batch.annotator_quota
    if quota is not None and live_pair.error == LIVE_QUOTA_REACHED.format(quota=quota):
        return live_pair.error
    return LIVE_PAIR_FAILED


def live_pair_sample(*, live_pair_id: int) -> LivePair:
    """Sample the pair and lease it to the annotator who asked; a failure is recorded, not raised.

    An annotator who reached the batch's quota meanwhile gets no pair: nothing is sampled.
    """
    live_pair = LivePair.objects.select_related("batch", "prompt", "requested_by").get(pk=live_pair_id)
    if live_pair.status != LivePair.Status.PENDING:
        return live_pair
    try:
        # The quota again, now: judgements given since the request may have reached it.
        _check_live_quota(live_pair.batch, live_pair.requested_by, counting_pending=False)
        engine_name, engine = sampler_engine()
        (comparison,) = batch_sample_prompts(
            batch=live_pair.batch, prompts=[live_pair.prompt], engine=engine, engine_name=engine_name
        )
    except (Conflict, EngineError, ValueError) as error:
        # Kept whole for staff (the batch's detail, the admin); its author is told live_pair_public_error.
        message = error.message if isinstance(error, Conflict) else str(error)
        live_pair.status, live_pair.error = LivePair.Status.FAILED, message
    else:
        live_pair.comparison = comparison
        live_pair.assignment = assignment_lease_comparison(comparison=comparison, annotator=live_pair.requested_by)
        live_pair.status = LivePair.Status.DONE
    live_pair.finished_at = timezone.now()
    live_pair.save(update_fields=["status", "error", "comparison", "assignment", "finished_at"])
    return live_pair
