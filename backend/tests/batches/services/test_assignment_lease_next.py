import re
from datetime import timedelta

import pytest
from django.utils import timezone

from backend.accounts.roles import Role
from backend.batches.models import Assignment, Batch
from backend.batches.services.annotations import (
    BATCH_NOT_IN_WINDOW,
    BATCH_NOT_OPEN,
    annotation_submit,
    assignment_lease_next,
)
from backend.batches.services.batches import batch_close
from backend.errors import Conflict
from tests.factories import make_batch, make_user

pytestmark = pytest.mark.django_db


def submit(assignment: Assignment, key: str) -> None:
    annotation_submit(
        assignment_id=assignment.pk,
        annotator=assignment.annotator,
        choice="a",
        strength="better",
        idempotency_key=key,
    )


def test_asking_again_returns_the_same_live_lease(annotator):
    batch = make_batch(comparisons=3)
    first = assignment_lease_next(batch=batch, annotator=annotator)
    again = assignment_lease_next(batch=batch, annotator=annotator)
    assert first is not None and again is not None
    assert again.pk == first.pk
    assert Assignment.objects.count() == 1


def test_an_annotator_never_gets_the_same_comparison_twice(annotator):
    batch = make_batch(comparisons=3, overlap=2)
    seen = []
    while (assignment := assignment_lease_next(batch=batch, annotator=annotator)) is not None:
        seen.append(assignment.comparison_id)
        submit(assignment, f"k{len(seen)}")
    assert sorted(seen) == sorted(batch.comparisons.values_list("id", flat=True))


def test_a_comparison_is_never_leased_beyond_its_overlap():
    batch = make_batch(comparisons=1, overlap=2)
    annotators = [make_user(Role.ANNOTATOR) for _ in range(3)]
    leases = [assignment_lease_next(batch=batch, annotator=a) for a in annotators]
    assert leases[0] is not None and leases[1] is not None
    assert leases[2] is None


def test_fewest_annotations_first():
    batch = make_batch(comparisons=2, overlap=2)
    first_annotator, second_annotator = make_user(Role.ANNOTATOR), make_user(Role.ANNOTATOR)
    lease = assignment_lease_next(batch=batch, annotator=first_annotator)
    assert lease is not None
    submit(lease, "one")
    other = assignment_lease_next(batch=batch, annotator=second_annotator)
    assert other is not None
    assert other.comparison_id != lease.comparison_id


def test_an_expired_lease_returns_its_comparison_to_the_pool():
    batch = make_batch(comparisons=1, overlap=1)
    slow, quick = make_user(Role.ANNOTATOR), make_user(Role.ANNOTATOR)
    now = timezone.now()
    lease = assignment_lease_next(batch=batch, annotator=slow, now=now)
    assert lease is not None
    assert assignment_lease_next(batch=batch, annotator=quick, now=now) is None
    later = now + timedelta(hours=1)
    taken_over = assignment_lease_next(batch=batch, annotator=quick, now=later)
    assert taken_over is not None
    assert taken_over.comparison_id == lease.comparison_id


def test_skipping_gives_the_place_to_someone_else():
    from backend.batches.services.annotations import assignment_skip

    batch = make_batch(comparisons=1, overlap=1)
    skipper, other = make_user(Role.ANNOTATOR), make_user(Role.ANNOTATOR)
    lease = assignment_lease_next(batch=batch, annotator=skipper)
    assert lease is not None
    assignment_skip(assignment_id=lease.pk, annotator=skipper, reason="prompt_unusable", idempotency_key="s1")
    assert assignment_lease_next(batch=batch, annotator=skipper) is None
    given = assignment_lease_next(batch=batch, annotator=other)
    assert given is not None and given.comparison_id == lease.comparison_id


def test_a_closed_or_draft_batch_leases_nothing(annotator):
    draft = make_batch(comparisons=1, open_it=False)
    with pytest.raises(Conflict, match=re.escape(BATCH_NOT_OPEN)):
        assignment_lease_next(batch=draft, annotator=annotator)
    closed = batch_close(batch=make_batch(comparisons=1))
    with pytest.raises(Conflict, match=re.escape(BATCH_NOT_OPEN)):
        assignment_lease_next(batch=closed, annotator=annotator)


def test_outside_the_window_leases_nothing(annotator):
    now = timezone.now()
    batch = make_batch(comparisons=1, opens_at=now - timedelta(days=2), closes_at=now - timedelta(days=1))
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.OPEN)
    with pytest.raises(Conflict, match=re.escape(BATCH_NOT_IN_WINDOW)):
        assignment_lease_next(batch=batch, annotator=annotator, now=now)


def test_swap_flags_vary_across_leases():
    batch = make_batch(comparisons=40, overlap=1)
    annotator = make_user(Role.ANNOTATOR)
    swaps = set()
    for i in range(40):
        lease = assignment_lease_next(batch=batch, annotator=annotator)
        assert lease is not None
        swaps.add(lease.swap)
        submit(lease, f"s{i}")
    assert swaps == {True, False}


def test_the_quota_stops_leasing_for_that_annotator_only():
    batch = make_batch(comparisons=3)
    Batch.objects.filter(pk=batch.pk).update(annotator_quota=1)
    batch.refresh_from_db()
    capped, other = make_user(Role.ANNOTATOR), make_user(Role.ANNOTATOR)
    first = assignment_lease_next(batch=batch, annotator=capped)
    assert first is not None
    submit(first, "q1")
    assert assignment_lease_next(batch=batch, annotator=capped) is None
    assert assignment_lease_next(batch=batch, annotator=other) is not None
