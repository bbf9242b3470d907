"""A template whose annotators write the prompts: its weekly batch samples nothing from the pool (its page serves
only live pairs) and opens at once."""

from datetime import UTC, datetime, timedelta

import pytest

from backend.batches.models import Batch, Comparison
from loop.services.templates import template_create, weekly_batches_run
from tests.factories import make_checkpoint, make_prompt

pytestmark = pytest.mark.django_db
MONDAY = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def test_a_writing_template_opens_its_batch_without_sampling_the_pool(batch_admin):
    make_checkpoint("policy-old")
    make_checkpoint("policy-new")
    for number in range(3):
        make_prompt(f"Pool prompt {number}?")
    template_create(created_by=batch_admin, name="write", size=20, prompt_source="annotator", annotator_quota=5)
    chunks: list[tuple[int, list[int]]] = []

    def enqueue(batch_id: int, ids: list[int]) -> None:
        chunks.append((batch_id, ids))

    (weekly,) = weekly_batches_run(now=MONDAY, enqueue=enqueue)
    batch = Batch.objects.get(pk=weekly.batch_id)
    assert batch.annotators_write_prompts and batch.annotator_quota == 5
    assert batch.status == Batch.Status.OPEN and not batch.sampling_error
    assert chunks == [] and not Comparison.objects.filter(batch=batch).exists()
    assert [c.name for c in batch.checkpoints.order_by("id")] == ["policy-old", "policy-new"]  # for live pairs

    again = weekly_batches_run(now=MONDAY + timedelta(days=2), enqueue=enqueue)
    assert [w.batch_id for w in again] == [batch.pk] and chunks == []
