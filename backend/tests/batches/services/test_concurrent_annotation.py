"""Many annotators leasing and submitting at once, on the real PostgreSQL (row locks, SKIP LOCKED)."""

import threading
from collections import Counter

import pytest
from django.db import connection

from backend.accounts.roles import Role
from backend.batches.models import Annotation, Assignment, Comparison
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from tests.factories import make_batch, make_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 24
COMPARISONS = 30
OVERLAP = 3


def work(batch, annotator, errors: list[BaseException], submitted: list[int]) -> None:
    try:
        while (assignment := assignment_lease_next(batch=batch, annotator=annotator)) is not None:
            key = f"{annotator.pk}-{assignment.pk}"
            annotation, created = annotation_submit(
                assignment_id=assignment.pk, annotator=annotator, choice="a", strength="better", idempotency_key=key
            )
            # A client retry of the very same request: must not store a second row.
            again, created_again = annotation_submit(
                assignment_id=assignment.pk, annotator=annotator, choice="a", strength="better", idempotency_key=key
            )
            assert created and not created_again and again.pk == annotation.pk
            submitted.append(annotation.pk)
    except BaseException as error:  # collected and re-raised in the main thread
        errors.append(error)
    finally:
        connection.close()


def test_every_comparison_ends_with_exactly_overlap_annotations():
    batch = make_batch(comparisons=COMPARISONS, overlap=OVERLAP)
    annotators = [make_user(Role.ANNOTATOR) for _ in range(THREADS)]
    errors: list[BaseException] = []
    submitted: list[int] = []
    threads = [threading.Thread(target=work, args=(batch, a, errors, submitted)) for a in annotators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert all(not thread.is_alive() for thread in threads)

    per_comparison = Counter(Annotation.objects.values_list("comparison_id", flat=True))
    assert len(per_comparison) == COMPARISONS
    assert set(per_comparison.values()) == {OVERLAP}
    assert len(submitted) == len(set(submitted)) == COMPARISONS * OVERLAP == Annotation.objects.count()
    assert set(Comparison.objects.filter(batch=batch).values_list("annotation_count", flat=True)) == {OVERLAP}
    pairs = Assignment.objects.values_list("comparison_id", "annotator_id")
    assert len(pairs) == len(set(pairs)), "an annotator got the same comparison twice"
