"""Admins run batches from the Django admin; the actions go through the services."""

import pytest
from django.test import Client

from backend.accounts.roles import Role
from backend.batches.models import Batch
from tests.factories import make_batch, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():
    user = make_user(Role.ADMIN, username="boss", password="a-long-password")
    client = Client()
    assert client.login(username="boss", password="a-long-password")
    return client, user


@pytest.mark.parametrize(
    "page",
    [
        "/admin/",
        "/admin/batches/batch/",
        "/admin/batches/batch/add/",
        "/admin/batches/prompt/",
        "/admin/batches/comparison/",
        "/admin/batches/annotation/",
        "/admin/checkpoints/checkpoint/",
        "/admin/auth/user/",
    ],
)
def test_admin_pages_open_for_batch_admins(admin_client, page):
    client, _ = admin_client
    make_batch(comparisons=1)
    assert client.get(page).status_code == 200


def test_the_open_action_uses_the_service_and_reports_refusals(admin_client):
    client, _ = admin_client
    ready = make_batch(comparisons=3, open_it=False)
    empty = make_batch(comparisons=0, open_it=False)
    response = client.post(
        "/admin/batches/batch/",
        {"action": "open_batches", "_selected_action": [ready.pk, empty.pk]},
        follow=True,
    )
    messages = [str(m) for m in response.context["messages"]]
    assert Batch.objects.get(pk=ready.pk).status == Batch.Status.OPEN
    assert Batch.objects.get(pk=empty.pk).status == Batch.Status.DRAFT
    assert any("no comparisons" in m for m in messages)


def test_annotators_cannot_use_the_admin():
    make_user(Role.ANNOTATOR, username="ann", password="a-long-password")
    client = Client()
    client.login(username="ann", password="a-long-password")
    assert client.get("/admin/batches/batch/").status_code == 302
