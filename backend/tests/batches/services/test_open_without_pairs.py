"""A batch whose annotators write the prompts serves only live pairs, so it opens with none sampled."""

import re

import pytest
from django.urls import reverse

from backend.batches.models import Batch
from backend.batches.services.batches import BATCH_EMPTY, batch_create, batch_open
from backend.errors import Conflict
from tests.factories import make_checkpoint

pytestmark = pytest.mark.django_db


def draft(*, writes: bool) -> Batch:
    batch, _ = batch_create(
        name=f"open-empty-{writes}",
        target_comparisons=5,
        created_by=None,
        checkpoint_ids=[make_checkpoint().pk, make_checkpoint().pk],
        temperatures=[0.7, 1.0],
        annotators_write_prompts=writes,
    )
    return batch


def test_a_writing_batch_opens_with_no_pairs_and_a_pool_batch_still_does_not():
    opened = batch_open(batch=draft(writes=True))
    assert opened.status == Batch.Status.OPEN and opened.opened_at is not None
    with pytest.raises(Conflict, match=re.escape(BATCH_EMPTY)):
        batch_open(batch=draft(writes=False))


def test_admins_open_an_empty_writing_batch_over_the_api(client_for, batch_admin):
    batch = draft(writes=True)
    response = client_for(batch_admin).post(reverse("batch-open", kwargs={"batch_id": batch.pk}))
    assert response.status_code == 200 and response.json()["status"] == "open", response.content
    pool = draft(writes=False)
    refused = client_for(batch_admin).post(reverse("batch-open", kwargs={"batch_id": pool.pk}))
    assert refused.status_code == 409 and refused.json()["detail"] == BATCH_EMPTY
