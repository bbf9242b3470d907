"""Reads for the annotation core: what each role may see, and batch progress figures."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from backend.accounts.roles import Role, user_has_role
from backend.batches import annotation_sql
from backend.batches.models import (
    Annotation,
    Assignment,
    Batch,
    Comparison,
    LivePair,
    Prompt,
    Turn,
)
from backend.errors import NotFound

BATCH_NOT_FOUND = "No such batch."
ASSIGNMENT_NOT_FOUND = "No such assignment of yours."
PROMPT_NOT_FOUND = "No prompt with this id."


def _sees_every_batch(user: User) -> bool:
    """Admins and researchers see every batch; annotators only open ones."""
    return user_has_role(user, Role.ADMIN, Role.RESEARCHER)


def batch_list(*, user: User) -> "QuerySet[Batch]":
    batches = Batch.objects.all()
    return batches if _sees_every_batch(user) else batches.filter(status=Batch.Status.OPEN)


def batch_by_id(*, batch_id: int) -> Batch:
    """Any batch, for staff endpoints (their permission classes have already let the caller in)."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        raise NotFound(BATCH_NOT_FOUND)
    return batch


def batch_comparisons(*, batch: Batch) -> "QuerySet[Comparison]":
    """A batch's comparisons with their prompt and responses, as staff list them."""
    return Comparison.objects.filter(batch=batch).select_related("prompt", "first_response", "second_response")


def prompt_by_id(*, prompt_id: int) -> Prompt:
    prompt = Prompt.objects.filter(pk=prompt_id).first()
    if prompt is None:
        raise NotFound(PROMPT_NOT_FOUND)
    return prompt


def own_assignment(*, assignment_id: int, annotator: User) -> Assignment | None:
    """One of the annotator's own assignments with its batch (None for anyone else's, or none)."""
    return Assignment.objects.select_related("comparison__batch").filter(pk=assignment_id, annotator=annotator).first()


def batch_get(*, batch_id: int, user: User) -> Batch:
    """A batch the user may see; 404 (not 403) otherwise, so existence is not revealed. (Read on every lease.)"""
    batch = annotation_sql.batch(batch_id=batch_id, open_only=not _sees_every_batch(user))
    if batch is None:
        raise NotFound(BATCH_NOT_FOUND)
    return batch


@dataclass(frozen=True)
class BatchProgress:
    comparisons: int
    held_out: int
    complete: int
    annotations: int
    skips: int
    live_leases: int
    target_annotations: int

    @property
    def fraction_done(self) -> float:
        return self.annotations / self.target_annotations if self.target_annotations else 0.0


def batch_progress(*, batch: Batch, now: datetime | None = None) -> BatchProgress:
    now = now or timezone.now()
    # Gold comparisons are quality control, outside the target: neither they nor their judgements count here.
    comparisons = Comparison.objects.filter(batch=batch, is_gold=False).aggregate(
        total=Count("id"),
        held_out=Count("id", filter=Q(is_held_out=True)),
        complete=Count("id", filter=Q(annotation_count__gte=batch.overlap)),
    )
    assignments = Assignment.objects.filter(comparison__batch=batch, comparison__is_gold=False).aggregate(
        submitted=Count("id", filter=Q(status=Assignment.Status.SUBMITTED)),
        skipped=Count("id", filter=Q(status=Assignment.Status.SKIPPED)),
        live=Count("id", filter=Q(status=Assignment.Status.LEASED, expires_at__gt=now)),
    )
    return BatchProgress(
        comparisons=comparisons["total"],
        held_out=comparisons["held_out"],
        complete=comparisons["complete"],
        annotations=assignments["submitted"],
        skips=assignments["skipped"],
        live_leases=assignments["live"],
        target_annotations=batch.target_comparisons * batch.overlap,
    )


LIVE_PAIR_FAILURES_SHOWN = 20


def batch_live_pairs(*, batch: Batch) -> dict[str, Any]:
    """Staff only: the batch's live pairs by status, and the newest failures with the engine's full error
    (their authors were told only a generic reason)."""
    counts = LivePair.objects.filter(batch=batch).aggregate(
        pending=Count("id", filter=Q(status=LivePair.Status.PENDING)),
        done=Count("id", filter=Q(status=LivePair.Status.DONE)),
        failed=Count("id", filter=Q(status=LivePair.Status.FAILED)),
    )
    failures = (
        LivePair.objects.filter(batch=batch, status=LivePair.Status.FAILED)
        .order_by("-finished_at", "-id")
        .values("id", "prompt_id", "requested_by_id", "error", "finished_at")[:LIVE_PAIR_FAILURES_SHOWN]
    )
    return {
        **counts,
        "recent_failures": [
            {
                "id": row["id"],
                "prompt": row["prompt_id"],
                "requested_by": row["requested_by_id"],
                "error": row["error"],
                "finished_at": row["finished_at"],
            }
            for row in failures
        ],
    }


@dataclass(frozen=True)
class AssignmentDisplay:
    """A leased comparison as its annotator sees it: sides A/B in the lease's order, no model identity."""

    id: int
    batch: int
    focus: str
    status: str
    dialogue: list[dict[str, str]]
    prompt: str
    response_a: str
    response_b: str
    leased_at: datetime
    expires_at: datetime


def assignment_for_display(*, assignment_id: int, annotator: User | None = None) -> AssignmentDisplay:
    """Everything the comparison page shows of an assignment (with `annotator`: only of theirs), in one query.

    A second query reads the dialogue, only for a multi-turn prompt. Only the columns shown are read (the
    responses' provenance stays in the database), and no model is built: this runs on every lease.
    """
    row = annotation_sql.display_row(
        assignment_id=assignment_id, annotator_id=None if annotator is None else annotator.pk
    )
    if row is None:
        raise NotFound(ASSIGNMENT_NOT_FOUND)
    swap, status, leased_at, expires_at, batch_id, focus, prompt, dialogue_id, first, second = row
    return AssignmentDisplay(
        id=assignment_id,
        batch=batch_id,
        focus=focus,
        status=status,
        dialogue=dialogue_messages(dialogue_id=dialogue_id),
        prompt=prompt,
        response_a=second if swap else first,
        response_b=first if swap else second,
        leased_at=leased_at,
        expires_at=expires_at,
    )


def dialogue_messages(*, dialogue_id: int | None) -> list[dict[str, str]]:
    """A dialogue's turns as chat messages, oldest first (none without a dialogue)."""
    if dialogue_id is None:
        return []
    turns = Turn.objects.filter(dialogue_id=dialogue_id).order_by("index").values_list("role", "content")
    return [{"role": role, "content": content} for role, content in turns]


def prompt_messages(*, prompt: Prompt) -> list[dict[str, str]]:
    """The chat a model answers (and a reward model reads): the dialogue so far, then the prompt as the user's turn."""
    return [*dialogue_messages(dialogue_id=prompt.dialogue_id), {"role": "user", "content": prompt.text}]


def annotation_list(*, user: User, batch_id: int | None = None) -> "QuerySet[Annotation]":
    """Admins and researchers see all annotations; annotators see their own; optionally of one batch."""
    annotations = Annotation.objects.select_related("comparison")
    if batch_id is not None:
        annotations = annotations.filter(comparison__batch_id=batch_id)
    if user_has_role(user, Role.ADMIN, Role.RESEARCHER):
        return annotations
    return annotations.filter(annotator=user)


def prompt_list(*, user: User) -> "QuerySet[Prompt]":
    """Admins and researchers see the whole pool; annotators see the prompts they wrote."""
    if user_has_role(user, Role.ADMIN, Role.RESEARCHER):
        return Prompt.objects.all()
    return Prompt.objects.filter(author=user)


@dataclass(frozen=True)
class AnnotatorBatch:
    """An open batch as one annotator sees it on their home page."""

    batch: Batch
    done: int
    skipped: int

    @property
    def quota_left(self) -> int | None:
        return None if self.batch.annotator_quota is None else max(self.batch.annotator_quota - self.done, 0)


def annotator_batch_overview(*, annotator: User) -> list[AnnotatorBatch]:
    """Open batches with the annotator's own judgements and skips in each, in one query."""
    mine = Q(comparisons__assignments__annotator=annotator)
    batches = (
        Batch.objects.filter(status=Batch.Status.OPEN)
        .annotate(
            done=Count(
                "comparisons__assignments",
                filter=mine & Q(comparisons__assignments__status=Assignment.Status.SUBMITTED),
            ),
            skipped=Count(
                "comparisons__assignments", filter=mine & Q(comparisons__assignments__status=Assignment.Status.SKIPPED)
            ),
        )
        .order_by("-opened_at", "-id")
    )
    return [AnnotatorBatch(batch=b, done=b.done, skipped=b.skipped) for b in batches]  # type: ignore[attr-defined]
