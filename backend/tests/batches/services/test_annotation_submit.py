import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from backend.accounts.roles import Role
from backend.batches.models import Annotation, Assignment, Comparison, Focus
from backend.batches.services import annotations as svc
from backend.errors import Conflict, InvalidInput, NotFound
from tests.factories import make_batch, make_user

pytestmark = pytest.mark.django_db


def lease(batch, annotator, now=None):
    assignment = svc.assignment_lease_next(batch=batch, annotator=annotator, now=now)
    assert assignment is not None
    return assignment


def submit(assignment, **overrides):
    values: dict[str, Any] = {"choice": "a", "strength": "better", "idempotency_key": "key-1"}
    values.update(overrides)
    return svc.annotation_submit(assignment_id=assignment.pk, annotator=assignment.annotator, **values)


def test_submit_resolves_the_displayed_side_to_the_chosen_response(annotator):
    batch = make_batch(comparisons=1)
    assignment = lease(batch, annotator)
    annotation, created = submit(assignment, choice="b")
    comparison = assignment.comparison
    shown_b = comparison.first_response_id if assignment.swap else comparison.second_response_id
    assert created
    assert annotation.chosen_response_id == shown_b
    assert {annotation.chosen_response_id, annotation.rejected_response_id} == {
        comparison.first_response_id,
        comparison.second_response_id,
    }
    assert Comparison.objects.get(pk=comparison.pk).annotation_count == 1
    assert Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.SUBMITTED


def test_the_same_idempotency_key_stores_one_annotation(annotator):
    assignment = lease(make_batch(comparisons=1), annotator)
    first, created_first = submit(assignment)
    second, created_second = submit(assignment)
    assert (created_first, created_second) == (True, False)
    assert first.pk == second.pk
    assert Annotation.objects.count() == 1
    assert Comparison.objects.get(pk=assignment.comparison_id).annotation_count == 1


def test_a_key_reused_on_another_assignment_is_refused(annotator):
    batch = make_batch(comparisons=2)
    submit(lease(batch, annotator))
    with pytest.raises(Conflict, match=re.escape(svc.IDEMPOTENCY_KEY_REUSED)):
        submit(lease(batch, annotator))


def test_a_second_submit_with_a_new_key_is_refused(annotator):
    assignment = lease(make_batch(comparisons=1), annotator)
    submit(assignment)
    with pytest.raises(Conflict, match=re.escape(svc.ASSIGNMENT_DONE)):
        submit(assignment, idempotency_key="key-2")


@pytest.mark.parametrize(
    ("field", "overrides", "message"),
    [
        ("choice", {"choice": "c"}, svc.CHOICE_INVALID),
        ("strength", {"strength": "much_better"}, svc.STRENGTH_INVALID),
        ("idempotency_key", {"idempotency_key": ""}, svc.IDEMPOTENCY_KEY_INVALID),
        ("idempotency_key", {"idempotency_key": "bad key!"}, svc.IDEMPOTENCY_KEY_INVALID),
        ("time_spent_ms", {"time_spent_ms": -1}, svc.TIME_SPENT_INVALID),
        ("comment", {"comment": "x" * 5001}, "longer than"),
        ("safety_label", {"safety_label": "both_safe"}, svc.SAFETY_LABEL_NOT_SAFETY_BATCH),
    ],
)
def test_bad_input_names_the_field(annotator, field, overrides, message):
    assignment = lease(make_batch(comparisons=1), annotator)
    with pytest.raises(InvalidInput, match=re.escape(message)) as error:
        submit(assignment, **overrides)
    assert error.value.field == field
    assert Annotation.objects.count() == 0


def test_all_four_strength_levels_are_accepted():
    batch = make_batch(comparisons=4)
    for level in ["significantly_better", "better", "slightly_better", "negligibly_better_or_unsure"]:
        annotator = make_user(Role.ANNOTATOR)
        annotation, _ = submit(lease(batch, annotator), strength=level)
        assert annotation.strength == level


def test_safety_batches_require_a_safety_label(annotator):
    assignment = lease(make_batch(comparisons=1, focus=Focus.SAFETY), annotator)
    with pytest.raises(InvalidInput, match=re.escape(svc.SAFETY_LABEL_REQUIRED)):
        submit(assignment)
    annotation, _ = submit(assignment, safety_label="both_unsafe")
    assert annotation.safety_label == "both_unsafe"


def test_chosen_unsafe_while_the_other_is_safe_is_refused_with_the_reason(annotator):
    assignment = lease(make_batch(comparisons=1, focus=Focus.SAFETY), annotator)
    with pytest.raises(InvalidInput) as error:
        submit(assignment, safety_label="chosen_unsafe_other_safe")
    assert error.value.field == "safety_label"
    assert "safe response" in error.value.message
    assert Annotation.objects.count() == 0


def test_someone_elses_assignment_is_not_found(annotator):
    assignment = lease(make_batch(comparisons=1), annotator)
    intruder = make_user(Role.ANNOTATOR)
    with pytest.raises(NotFound):
        svc.annotation_submit(
            assignment_id=assignment.pk, annotator=intruder, choice="a", strength="better", idempotency_key="k"
        )


def test_a_late_submit_is_kept_while_the_comparison_still_has_room(annotator):
    now = timezone.now()
    assignment = lease(make_batch(comparisons=1), annotator, now=now)
    annotation, created = svc.annotation_submit(
        assignment_id=assignment.pk,
        annotator=annotator,
        choice="a",
        strength="better",
        idempotency_key="late",
        now=now + timedelta(hours=2),
    )
    assert created and annotation.pk


def test_a_late_submit_is_refused_once_others_filled_the_comparison(annotator):
    now = timezone.now()
    batch = make_batch(comparisons=1)
    stale = lease(batch, annotator, now=now)
    later = now + timedelta(hours=2)
    other = make_user(Role.ANNOTATOR)
    fresh = svc.assignment_lease_next(batch=batch, annotator=other, now=later)
    assert fresh is not None
    svc.annotation_submit(
        assignment_id=fresh.pk, annotator=other, choice="b", strength="better", idempotency_key="o", now=later
    )
    with pytest.raises(Conflict, match=re.escape(svc.LEASE_EXPIRED)):
        svc.annotation_submit(
            assignment_id=stale.pk, annotator=annotator, choice="a", strength="better", idempotency_key="s", now=later
        )


def test_time_on_task_defaults_to_lease_to_submit(annotator):
    now = timezone.now()
    assignment = lease(make_batch(comparisons=1), annotator, now=now)
    annotation, _ = svc.annotation_submit(
        assignment_id=assignment.pk,
        annotator=annotator,
        choice="a",
        strength="better",
        idempotency_key="t",
        now=now + timedelta(seconds=42),
    )
    assert annotation.time_spent_ms == 42_000


def test_skip_needs_a_known_reason_and_a_comment_for_other(annotator):
    assignment = lease(make_batch(comparisons=1), annotator)
    with pytest.raises(InvalidInput, match=re.escape(svc.SKIP_REASON_INVALID)):
        svc.assignment_skip(assignment_id=assignment.pk, annotator=annotator, reason="bored", idempotency_key="k")
    with pytest.raises(InvalidInput, match=re.escape(svc.SKIP_OTHER_NEEDS_COMMENT)):
        svc.assignment_skip(assignment_id=assignment.pk, annotator=annotator, reason="other", idempotency_key="k")
    skip, created = svc.assignment_skip(
        assignment_id=assignment.pk, annotator=annotator, reason="both_empty", idempotency_key="k"
    )
    assert created and skip.is_skipped and skip.chosen_response_id is None
    assert Comparison.objects.get(pk=assignment.comparison_id).annotation_count == 0
