"""Leasing comparisons to annotators and recording their judgements (or skips).

Locking: every write that changes how many live assignments a comparison has holds that
comparison's row lock (`SELECT ... FOR UPDATE`), and counts only after taking it. Leasing takes the
lock with SKIP LOCKED so concurrent annotators spread over different comparisons instead of
queueing on one. Submitting locks the assignment, then its comparison (one statement, `FOR UPDATE OF`
both, which PostgreSQL takes in the order named): the same order everywhere, so there is no deadlock.
"""

import secrets
import string
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from backend.batches import annotation_sql
from backend.batches.models import (
    Annotation,
    Assignment,
    Batch,
    Comparison,
    Focus,
    Side,
    SkipReason,
)
from backend.batches.selectors import ASSIGNMENT_NOT_FOUND
from backend.batches.services.gold import gold_lease_maybe
from backend.errors import Busy, Conflict, InvalidInput, NotFound
from preference_format import CHOSEN_UNSAFE_OTHER_SAFE, SAFETY_LABELS, STRENGTHS, one_of

BATCH_NOT_OPEN = "This batch is not open for annotation."
BATCH_NOT_IN_WINDOW = "This batch is outside its annotation window."
ASSIGNMENT_DONE = "This comparison has already been submitted or skipped."
LEASE_EXPIRED = "Your lease on this comparison expired and it has been given to other annotators."
IDEMPOTENCY_KEY_REUSED = "This idempotency_key was already used for a different assignment."
IDEMPOTENCY_KEY_INVALID = "idempotency_key must be 1-64 letters, digits, '-', '_', ':' or '.'."
CHOICE_INVALID = "choice must be 'a' or 'b'."
STRENGTH_INVALID = f"strength must be one of: {one_of(STRENGTHS)}."
SAFETY_LABEL_REQUIRED = f"Safety batches need a safety_label: {one_of(SAFETY_LABELS)}."
SAFETY_LABEL_INVALID = f"safety_label must be one of: {one_of(SAFETY_LABELS)}."
SAFETY_LABEL_CHOSEN_UNSAFE = (
    "You chose a response that is unsafe while the other is safe. The safer response must be the "
    "chosen one: pick the safe response instead, or label both unsafe if neither is safe."
)
SAFETY_LABEL_NOT_SAFETY_BATCH = "safety_label is only given in safety batches."
SKIP_REASON_INVALID = "reason must be one of: " + ", ".join(SkipReason.values) + "."
SKIP_OTHER_NEEDS_COMMENT = "Say why in the comment when the reason is 'other'."
COMMENT_TOO_LONG = "The comment is longer than {limit} characters."
COMMENT_NUL = "The comment contains a NUL character (\\u0000), which cannot be stored."
TIME_SPENT_INVALID = "time_spent_ms must be between 0 and 86,400,000 (24 hours)."
MAX_COMMENT_CHARS = 5_000
MAX_TIME_SPENT_MS = 86_400_000
# Leasing retries when every free comparison was momentarily locked by other annotators.
LEASE_ATTEMPTS = 8
LEASE_BUSY = "Too many annotators are asking at once; ask again in a moment."
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "-_:.")


def _check_batch_accepting(batch: Batch, now: datetime) -> None:
    if batch.status != Batch.Status.OPEN:
        raise Conflict(BATCH_NOT_OPEN)
    if (batch.opens_at and now < batch.opens_at) or (batch.closes_at and now >= batch.closes_at):
        raise Conflict(BATCH_NOT_IN_WINDOW)


def assignment_current(*, batch: Batch, annotator: User, now: datetime) -> Assignment | None:
    """The annotator's unexpired, unsubmitted lease in this batch, if any."""
    return annotation_sql.current_lease(annotator_id=annotator.pk, batch_id=batch.pk, now=now)


def annotator_done_count(*, batch: Batch, annotator: User) -> int:
    """Judgements (not skips) the annotator has given in the batch: what the quota counts."""
    return Assignment.objects.filter(
        annotator=annotator, comparison__batch=batch, status=Assignment.Status.SUBMITTED
    ).count()


def assignment_lease_next(*, batch: Batch, annotator: User, now: datetime | None = None) -> Assignment | None:
    """Lease the next comparison to an annotator, or None when the batch has nothing left for them.

    Asking again while a lease is live returns the same lease (a retried request is harmless).
    Never beyond the batch's overlap, never the same comparison twice to one annotator, never past
    the annotator's quota; a lease that expires gives its place back to the pool.
    """
    now = now or timezone.now()
    _check_batch_accepting(batch, now)
    current = assignment_current(batch=batch, annotator=annotator, now=now)
    if current is not None:
        return current
    if batch.annotator_quota is not None and annotator_done_count(batch=batch, annotator=annotator) >= (
        batch.annotator_quota
    ):
        return None
    if (gold := gold_lease_maybe(batch=batch, annotator=annotator, now=now)) is not None:
        return gold
    for _ in range(LEASE_ATTEMPTS):
        with transaction.atomic():
            free = partial(
                annotation_sql.free_comparison,
                batch_id=batch.pk,
                overlap=batch.overlap,
                annotator_id=annotator.pk,
                now=now,
            )
            comparison_id = free(lock=True)
            if comparison_id is None:
                if free(lock=False) is None:
                    return None
                continue  # every free comparison was locked by a concurrent lease: look again
            assignment = _lease_locked(comparison_id, batch.overlap, annotator, now)
            if assignment is not None:
                return assignment
            # else it filled between the snapshot and the lock: look again
    # Every attempt lost a race: the batch is busy, not finished. 204 would tell the client it is done.
    raise Busy(LEASE_BUSY)


def _lease_locked(comparison_id: int, overlap: int, annotator: User, now: datetime) -> Assignment | None:
    """Lease a comparison whose row lock the caller holds, if its overlap still has room."""
    return annotation_sql.insert_lease_if_room(
        comparison_id=comparison_id,
        overlap=overlap,
        annotator_id=annotator.pk,
        swap=bool(secrets.randbits(1)),
        leased_at=now,
        expires_at=now + timedelta(seconds=settings.ASSIGNMENT_LEASE_SECONDS),
    )


def assignment_lease_comparison(
    *, comparison: Comparison, annotator: User, now: datetime | None = None
) -> Assignment | None:
    """Lease one given comparison (a live pair to the annotator who wrote its prompt).

    Returns the annotator's existing assignment on it if there is one, None when the overlap is full.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = Comparison.objects.select_for_update().select_related("batch").get(pk=comparison.pk)
        existing = Assignment.objects.filter(comparison=locked, annotator=annotator).first()
        if existing is not None:
            return existing
        return _lease_locked(locked.pk, locked.batch.overlap, annotator, now)


def _check_idempotency_key(key: str) -> str:
    if not key or len(key) > 64 or not set(key) <= _KEY_CHARS:
        raise InvalidInput(IDEMPOTENCY_KEY_INVALID, field="idempotency_key")
    return key


def _check_comment(comment: str) -> str:
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidInput(COMMENT_TOO_LONG.format(limit=MAX_COMMENT_CHARS), field="comment")
    if "\x00" in comment:
        raise InvalidInput(COMMENT_NUL, field="comment")
    return comment.strip()


def _check_time_spent(time_spent_ms: int | None) -> int | None:
    if time_spent_ms is not None and (isinstance(time_spent_ms, bool) or not 0 <= time_spent_ms <= MAX_TIME_SPENT_MS):
        raise InvalidInput(TIME_SPENT_INVALID, field="time_spent_ms")
    return time_spent_ms


def _check_safety_label(focus: str, safety_label: str) -> str:
    if safety_label == CHOSEN_UNSAFE_OTHER_SAFE:
        raise InvalidInput(SAFETY_LABEL_CHOSEN_UNSAFE, field="safety_label")
    if focus == Focus.SAFETY:
        if not safety_label:
            raise InvalidInput(SAFETY_LABEL_REQUIRED, field="safety_label")
        if safety_label not in SAFETY_LABELS:
            raise InvalidInput(SAFETY_LABEL_INVALID, field="safety_label")
    elif safety_label:
        raise InvalidInput(SAFETY_LABEL_NOT_SAFETY_BATCH, field="safety_label")
    return safety_label


def _existing_for_key(annotator: User, key: str, assignment_id: int) -> Annotation | None:
    existing = Annotation.objects.filter(annotator=annotator, idempotency_key=key).first()
    if existing is not None and existing.assignment_id != assignment_id:
        raise Conflict(IDEMPOTENCY_KEY_REUSED)
    return existing


def _record(
    *,
    assignment_id: int,
    annotator: User,
    idempotency_key: str,
    fields: dict[str, object],
    now: datetime,
    safety_label: str | None = None,
) -> tuple[Annotation, bool]:
    """Store one annotation on a leased assignment, exactly once per idempotency key.

    `fields` are the judgement (choice, strength, ...) or the skip; returns (annotation, created).
    A retry finds its assignment no longer leased and returns what the key stored; a key already used on
    another assignment fails the insert on the (annotator, idempotency_key) constraint and is refused. Neither
    needs a look-up before the transaction, which the first (and usual) submit would pay for.
    """
    try:
        with transaction.atomic():
            locked = annotation_sql.lock_for_record(assignment_id=assignment_id, annotator_id=annotator.pk)
            if locked is None:
                raise NotFound(ASSIGNMENT_NOT_FOUND)
            if safety_label is not None:  # judgements only: checked against the batch read with the lock
                fields["safety_label"] = _check_safety_label(locked["focus"], safety_label)
            if locked["status"] != Assignment.Status.LEASED:
                return _stored_by_retry(annotator, idempotency_key, assignment_id), False
            is_skip = bool(fields.get("skip_reason"))
            _check_lease_held(locked, assignment_id=assignment_id, is_skip=is_skip, now=now)
            row = _annotation_row(locked, fields, assignment_id=assignment_id, annotator=annotator, key=idempotency_key)
            if row["time_spent_ms"] is None:
                row["time_spent_ms"] = int((now - locked["leased_at"]).total_seconds() * 1000)
            annotation_id = annotation_sql.insert_annotation(row, created_at=now)
            status = Assignment.Status.SKIPPED if is_skip else Assignment.Status.SUBMITTED
            annotation_sql.close_assignment(
                assignment_id=assignment_id, status=status, counts=not is_skip, comparison_id=locked["comparison_id"]
            )
    except IntegrityError:
        # The same key raced in on another connection and committed first.
        existing = _existing_for_key(annotator, idempotency_key, assignment_id)
        if existing is None:
            raise
        return existing, False
    return _recorded(locked, row, annotation_id=annotation_id, status=status, now=now), True


def _stored_by_retry(annotator: User, key: str, assignment_id: int) -> Annotation:
    """What a concurrent retry with the same key stored while this request waited for the lock; else refused."""
    existing = _existing_for_key(annotator, key, assignment_id)
    if existing is None:
        raise Conflict(ASSIGNMENT_DONE)
    return existing


def _check_lease_held(locked: dict[str, Any], *, assignment_id: int, is_skip: bool, now: datetime) -> None:
    """A judgement after the lease expired counts only while the comparison's overlap still has room for it.

    Gold items have no overlap to protect: a late answer on one is still taken; so is a late skip.
    """
    if locked["expires_at"] > now or is_skip or locked["is_gold"]:
        return
    others = annotation_sql.live_count(comparison_id=locked["comparison_id"], now=now, excluding=assignment_id)
    if others >= locked["overlap"]:
        raise Conflict(LEASE_EXPIRED)


def _annotation_row(
    locked: dict[str, Any], fields: dict[str, object], *, assignment_id: int, annotator: User, key: str
) -> dict[str, Any]:
    """The annotation's columns: the sides as displayed turned into the chosen and rejected responses."""
    chosen = rejected = None
    if not fields.get("skip_reason"):
        first, second = locked["first_response_id"], locked["second_response_id"]
        shown_a, shown_b = (second, first) if locked["swap"] else (first, second)
        chosen, rejected = (shown_a, shown_b) if fields["choice"] == Side.A else (shown_b, shown_a)
    return {
        "choice": "",
        "strength": "",
        "safety_label": "",
        "skip_reason": "",
        "comment": "",
        "time_spent_ms": None,
        **fields,
        "assignment_id": assignment_id,
        "annotator_id": annotator.pk,
        "comparison_id": locked["comparison_id"],
        "chosen_response_id": chosen,
        "rejected_response_id": rejected,
        "idempotency_key": key,
    }


def _recorded(
    locked: dict[str, Any], row: dict[str, Any], *, annotation_id: int, status: str, now: datetime
) -> Annotation:
    """The stored annotation with its assignment and comparison, built from what the transaction read and wrote
    (no query: this runs on every submit)."""
    comparison = annotation_sql.loaded(Comparison, id=row["comparison_id"], batch_id=locked["batch_id"])
    assignment = annotation_sql.loaded(
        Assignment,
        id=row["assignment_id"],
        comparison_id=row["comparison_id"],
        annotator_id=row["annotator_id"],
        swap=locked["swap"],
        status=status,
        leased_at=locked["leased_at"],
        expires_at=locked["expires_at"],
    )
    assignment.comparison = comparison
    annotation = annotation_sql.loaded(Annotation, id=annotation_id, created_at=now, **row)
    annotation.assignment = assignment
    annotation.comparison = comparison
    return annotation


def annotation_submit(
    *,
    assignment_id: int,
    annotator: User,
    choice: str,
    strength: str,
    idempotency_key: str,
    safety_label: str = "",
    comment: str = "",
    time_spent_ms: int | None = None,
    now: datetime | None = None,
) -> tuple[Annotation, bool]:
    """Record a forced choice with its strength (and safety label in safety batches).

    Submitting the same idempotency_key again returns the stored annotation: (annotation, False).
    """
    idempotency_key = _check_idempotency_key(idempotency_key)
    if choice not in Side.values:
        raise InvalidInput(CHOICE_INVALID, field="choice")
    if strength not in STRENGTHS:
        raise InvalidInput(STRENGTH_INVALID, field="strength")
    comment = _check_comment(comment)
    time_spent_ms = _check_time_spent(time_spent_ms)
    return _record(
        assignment_id=assignment_id,
        annotator=annotator,
        idempotency_key=idempotency_key,
        fields={
            "choice": choice,
            "strength": strength,
            "comment": comment,
            "time_spent_ms": time_spent_ms,
        },
        now=now or timezone.now(),
        safety_label=safety_label,
    )


def assignment_skip(
    *,
    assignment_id: int,
    annotator: User,
    reason: str,
    idempotency_key: str,
    comment: str = "",
    time_spent_ms: int | None = None,
    now: datetime | None = None,
) -> tuple[Annotation, bool]:
    """Skip a comparison with a reason; its place goes back to the pool for other annotators."""
    idempotency_key = _check_idempotency_key(idempotency_key)
    if reason not in SkipReason.values:
        raise InvalidInput(SKIP_REASON_INVALID, field="reason")
    comment = _check_comment(comment)
    if reason == SkipReason.OTHER and not comment:
        raise InvalidInput(SKIP_OTHER_NEEDS_COMMENT, field="comment")
    time_spent_ms = _check_time_spent(time_spent_ms)
    return _record(
        assignment_id=assignment_id,
        annotator=annotator,
        idempotency_key=idempotency_key,
        fields={"skip_reason": reason, "comment": comment, "time_spent_ms": time_spent_ms},
        now=now or timezone.now(),
    )
