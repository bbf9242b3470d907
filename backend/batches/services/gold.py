"""Gold comparisons: pairs with a known answer, mixed unannounced into annotators' queues to measure accuracy.

A gold comparison is an ordinary Comparison of the batch flagged `is_gold`, with a GoldAnswer beside it. It
is outside the batch's target and overlap (the regular lease never serves it), each annotator meets it at
most once, and exports leave it out. An annotator whose gold accuracy since their last review falls below
GOLD_FLAG_ACCURACY, after at least GOLD_FLAG_MIN_ANSWERS gold answers, is flagged for an admin to review.
"""

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from backend.batches.models import (
    Annotation,
    Assignment,
    Batch,
    Comparison,
    Focus,
    GoldAnswer,
    GoldReview,
    Prompt,
    PromptSource,
)
from backend.batches.services.comparisons import ResponseInput, comparison_create
from backend.batches.services.prompts import MAX_PROMPT_CHARS
from backend.errors import InvalidInput
from preference_format import SAFETY_LABELS, one_of

GOLD_PROMPT_INVALID = f"The prompt must be 1-{MAX_PROMPT_CHARS} characters without NUL."
GOLD_BETTER_INVALID = "better must be 'first' or 'second': the response that is the right answer."
GOLD_SAFETY_LABEL_INVALID = f"safety_label must be empty or one of: {one_of(SAFETY_LABELS)}."
GOLD_SAFETY_LABEL_NOT_SAFETY_BATCH = "safety_label is only expected in safety batches."
GOLD_ANSWER_DIFFERS = "This batch already has this gold comparison with a different answer."
GOLD_RATE_INVALID = "gold_rate must be between 0 and 0.5."
BETTER_SIDES = ("first", "second")
MAX_GOLD_RATE = 0.5

# Draws whether a lease serves gold; a module attribute so a test can seed it.
_rng = random.SystemRandom()


def check_gold_rate(gold_rate: float) -> float:
    if isinstance(gold_rate, bool) or not 0 <= gold_rate <= MAX_GOLD_RATE:
        raise InvalidInput(GOLD_RATE_INVALID, field="gold_rate")
    return float(gold_rate)


def gold_comparison_create(
    *,
    batch: Batch,
    prompt_text: str,
    first: ResponseInput,
    second: ResponseInput,
    better: str,
    created_by: User | None,
    safety_label: str = "",
) -> tuple[Comparison, bool]:
    """Add a gold comparison to a batch; returns (comparison, created).

    A retry with the same prompt and responses returns the stored one; the same item with another answer
    is refused. The prompt is stored with source 'gold', so the sampler's pool never draws it.
    """
    text = prompt_text.strip()
    if not text or len(text) > MAX_PROMPT_CHARS or "\x00" in text:
        raise InvalidInput(GOLD_PROMPT_INVALID, field="prompt")
    if better not in BETTER_SIDES:
        raise InvalidInput(GOLD_BETTER_INVALID, field="better")
    if safety_label and safety_label not in SAFETY_LABELS:
        raise InvalidInput(GOLD_SAFETY_LABEL_INVALID, field="safety_label")
    if safety_label and batch.focus != Focus.SAFETY:
        raise InvalidInput(GOLD_SAFETY_LABEL_NOT_SAFETY_BATCH, field="safety_label")
    existing = (
        Comparison.objects.filter(
            batch=batch,
            is_gold=True,
            prompt__text=text,
            first_response__text=first.text,
            second_response__text=second.text,
        )
        .select_related("gold_answer")
        .first()
    )
    if existing is not None:
        answer = existing.gold_answer
        expected = existing.first_response_id if better == "first" else existing.second_response_id
        if answer.better_response_id != expected or answer.safety_label != safety_label:
            raise InvalidInput(GOLD_ANSWER_DIFFERS, field="better")
        return existing, False
    with transaction.atomic():
        prompt = Prompt.objects.create(
            text=text, author=created_by, source=PromptSource.GOLD, is_safety=batch.focus == Focus.SAFETY
        )
        comparison, _ = comparison_create(batch=batch, prompt=prompt, first=first, second=second, is_gold=True)
        GoldAnswer.objects.create(
            comparison=comparison,
            better_response_id=comparison.first_response_id if better == "first" else comparison.second_response_id,
            safety_label=safety_label,
            created_by=created_by,
        )
    return comparison, True


def gold_lease_maybe(*, batch: Batch, annotator: User, now: datetime) -> Assignment | None:
    """With probability `batch.gold_rate`, lease a gold comparison this annotator has never had.

    Called by the regular lease before it looks for work; no query unless the draw asks for gold.
    """
    if batch.gold_rate <= 0 or _rng.random() >= batch.gold_rate:
        return None
    unseen = (
        Comparison.objects.filter(batch=batch, is_gold=True)
        .exclude(assignments__annotator=annotator)
        .values_list("id", flat=True)
    )
    ids = list(unseen)
    if not ids:
        return None
    try:
        with transaction.atomic():
            return Assignment.objects.create(
                comparison_id=_rng.choice(ids),
                annotator=annotator,
                swap=bool(_rng.getrandbits(1)),
                leased_at=now,
                expires_at=now + timedelta(seconds=settings.ASSIGNMENT_LEASE_SECONDS),
            )
    except IntegrityError:
        return None  # a concurrent request of the same annotator leased it first: regular work instead


@dataclass(frozen=True)
class GoldJudgement:
    """One gold answer of an annotator, marked right or wrong."""

    annotator_id: int
    batch_id: int
    created_at: datetime
    correct: bool


def gold_judgements(*, annotator_ids: list[int] | None = None, batch_id: int | None = None) -> list[GoldJudgement]:
    """Every judgement (skips aside) on gold comparisons, compared with the known answer."""
    annotations = Annotation.objects.filter(comparison__is_gold=True, skip_reason="")
    if annotator_ids is not None:
        annotations = annotations.filter(annotator_id__in=annotator_ids)
    if batch_id is not None:
        annotations = annotations.filter(comparison__batch_id=batch_id)
    rows = annotations.values_list(
        "annotator_id",
        "comparison__batch_id",
        "created_at",
        "chosen_response_id",
        "safety_label",
        "comparison__gold_answer__better_response_id",
        "comparison__gold_answer__safety_label",
    ).order_by("created_at", "id")
    return [
        GoldJudgement(
            annotator_id=annotator_id,
            batch_id=batch_id_,
            created_at=created_at,
            correct=chosen == better and (not expected_label or label == expected_label),
        )
        for annotator_id, batch_id_, created_at, chosen, label, better, expected_label in rows
    ]


def gold_reviews_refresh(*, now: datetime | None = None) -> dict[str, int]:
    """Recount every annotator's gold answers since their last clear and flag those below the threshold.

    Idempotent (celery beat runs it every few minutes); a flag stays until an admin clears it.
    """
    now = now or timezone.now()
    cleared = dict(GoldReview.objects.values_list("annotator_id", "cleared_at"))
    tallies: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for judgement in gold_judgements():
        since = cleared.get(judgement.annotator_id)
        if since is None or judgement.created_at > since:
            tally = tallies[judgement.annotator_id]
            tally[0] += 1
            tally[1] += judgement.correct
    flagged = 0
    for annotator_id, (answered, correct) in tallies.items():
        below = answered >= settings.GOLD_FLAG_MIN_ANSWERS and correct / answered < settings.GOLD_FLAG_ACCURACY
        with transaction.atomic():
            review, _ = GoldReview.objects.select_for_update().get_or_create(annotator_id=annotator_id)
            review.answered, review.correct = answered, correct
            if below and not review.flagged:
                review.flagged, review.flagged_at = True, now
            review.save()
        flagged += review.flagged
    return {"annotators": len(tallies), "flagged": flagged}


def gold_review_clear(*, annotator: User, cleared_by: User | None, now: datetime | None = None) -> GoldReview:
    """An admin reviewed the annotator: clear the flag; accuracy counts afresh from now."""
    with transaction.atomic():
        review, _ = GoldReview.objects.select_for_update().get_or_create(annotator=annotator)
        review.flagged, review.flagged_at = False, None
        review.answered = review.correct = 0
        review.cleared_at, review.cleared_by = now or timezone.now(), cleared_by
        review.save()
    return review
