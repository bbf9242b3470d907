"""Scoring stored responses with a reward model, once per (response, checkpoint), for the drift figures."""

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from backend.batches.models import Annotation, Focus, Response
from backend.batches.selectors import prompt_messages
from backend.checkpoints.models import Checkpoint, CheckpointKind
from backend.checkpoints.selectors import checkpoint_local_path
from backend.errors import InvalidInput, NotFound
from insights.models import ResponseScore, ScoringRequest

CHECKPOINT_NOT_FOUND = "No such checkpoint."
CHECKPOINT_NOT_REWARD = "checkpoint must be a reward model (reward_helpfulness or reward_safety)."
SCORE_CHUNK = 64
FOCUS_OF_KIND = {
    CheckpointKind.REWARD_HELPFULNESS.value: Focus.HELPFULNESS,
    CheckpointKind.REWARD_SAFETY.value: Focus.SAFETY,
}


def _reward_checkpoint(checkpoint_id: int) -> Checkpoint:
    checkpoint = Checkpoint.objects.filter(pk=checkpoint_id).first()
    if checkpoint is None:
        raise NotFound(CHECKPOINT_NOT_FOUND)
    if checkpoint.kind not in FOCUS_OF_KIND:
        raise InvalidInput(CHECKPOINT_NOT_REWARD, field="checkpoint")
    return checkpoint


def unscored_response_ids(*, checkpoint: Checkpoint) -> list[int]:
    """Both responses of every judged comparison in batches of the checkpoint's focus that it has not scored."""
    judged = Annotation.objects.filter(skip_reason="", comparison__batch__focus=FOCUS_OF_KIND[checkpoint.kind])
    ids = set(judged.values_list("chosen_response_id", flat=True)) | set(
        judged.values_list("rejected_response_id", flat=True)
    )
    done = set(
        ResponseScore.objects.filter(checkpoint=checkpoint, response_id__in=ids).values_list("response_id", flat=True)
    )
    return sorted(ids - done)


def response_scores_request(*, checkpoint_id: int, enqueue: Callable[[int], None]) -> dict[str, int]:
    """Queue the scoring of what the reward model has not scored yet; returns how many responses wait."""
    checkpoint = _reward_checkpoint(checkpoint_id)
    waiting = len(unscored_response_ids(checkpoint=checkpoint))
    if waiting:
        with transaction.atomic():
            ScoringRequest.objects.update_or_create(
                checkpoint=checkpoint, defaults={"requested_at": timezone.now(), "finished_at": None}
            )
            transaction.on_commit(partial(enqueue, checkpoint.pk))
    return {"checkpoint": checkpoint.pk, "unscored": waiting}


def response_scores_compute(
    *, checkpoint_id: int, on_progress: Callable[[int, int], None] | None = None, device: str = "cpu"
) -> int:
    """Score every unscored response with the checkpoint, in chunks; returns how many were stored.

    Idempotent: a second run (a redelivered task) finds nothing left, and each chunk is stored once.
    """
    from sampler.engines.reward import RewardScorer  # torch: only in the worker that scores

    checkpoint = _reward_checkpoint(checkpoint_id)
    started = timezone.now()
    ids = unscored_response_ids(checkpoint=checkpoint)
    if not ids:
        _scoring_finished(checkpoint, started)
        return 0
    scorer = RewardScorer(checkpoint_local_path(checkpoint=checkpoint), device=device)
    stored = 0
    for start in range(0, len(ids), SCORE_CHUNK):
        responses = list(
            Response.objects.filter(pk__in=ids[start : start + SCORE_CHUNK]).select_related("prompt").order_by("id")
        )
        scores = scorer.score([prompt_messages(prompt=r.prompt) for r in responses], [r.text for r in responses])
        response_scores_store(checkpoint=checkpoint, scores={r.pk: s for r, s in zip(responses, scores, strict=True)})
        stored += len(responses)
        if on_progress is not None:
            on_progress(stored, len(ids))
    _scoring_finished(checkpoint, started)
    return stored


def response_scores_store(*, checkpoint: Checkpoint, scores: dict[int, float], **_signal: Any) -> None:
    """Keep a reward model's raw scores of responses ({response id: score}); a response it scored before keeps
    its first score. Also the receiver of the sampler's `responses_scored`."""
    ResponseScore.objects.bulk_create(
        [ResponseScore(response_id=pk, checkpoint=checkpoint, score=score) for pk, score in scores.items()],
        ignore_conflicts=True,
    )


def _scoring_finished(checkpoint: Checkpoint, started: datetime) -> None:
    """Close the checkpoint's request, unless it was asked for again after this run began (that request's own
    task scores what came since)."""
    ScoringRequest.objects.filter(checkpoint=checkpoint, finished_at=None, requested_at__lte=started).update(
        finished_at=timezone.now()
    )
