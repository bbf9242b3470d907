"""The comparison page and the next-comparison API cost a fixed number of queries, whatever the batch size."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backend.accounts.roles import Role
from backend.batches.models import Batch
from tests.factories import make_batch, make_user

pytestmark = pytest.mark.django_db

# Session, user, roles, batch; the page's own work then runs through the API.
PAGE_QUERIES = 4
# Session, user, batch (the roles the page's request read are still in backend.accounts.auth_cache), the live
# lease if any, then in one transaction (SAVEPOINT/RELEASE inside the test's own) the free comparison FOR UPDATE
# SKIP LOCKED and the insert that recounts its overlap; last, one read of everything the page shows.
NEXT_QUERIES = 9


def queries(client: Client, method: str, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = getattr(client, method)(url)
    assert response.status_code == 200, response.content[:300]
    return len(captured)


@pytest.mark.parametrize("size", [2, 40])
def test_fixed_query_counts(size, settings):
    settings.AUTH_CACHE_SECONDS = 3600  # the roles read by the page stay cached however slow the machine
    batch = make_batch(comparisons=size)
    # Without gold in the mix: at a batch's gold_rate a lease first looks for a gold comparison (one query more).
    Batch.objects.filter(pk=batch.pk).update(gold_rate=0)
    user = make_user(Role.ANNOTATOR, username=f"ann{size}", password="a-long-password")
    client = Client()
    client.force_login(user)
    assert queries(client, "get", reverse("batch-work", kwargs={"batch_id": batch.pk})) == PAGE_QUERIES
    assert queries(client, "post", reverse("assignment-next", kwargs={"batch_id": batch.pk})) == NEXT_QUERIES
