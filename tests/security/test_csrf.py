"""CSRF is enforced for session-authenticated writes; token-authenticated clients are unaffected."""

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from backend.accounts.roles import Role
from backend.batches.models import Batch
from tests.factories import make_batch, make_user

pytestmark = pytest.mark.django_db


def test_a_session_post_without_the_token_is_403_and_with_it_goes_through(batch_admin):
    batch = make_batch(comparisons=1)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(batch_admin)
    refused = browser.post(f"/api/v1/batches/{batch.pk}/close/")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.OPEN

    browser.get("/")  # any page sets the csrftoken cookie
    token = browser.cookies["csrftoken"].value
    assert browser.post(f"/api/v1/batches/{batch.pk}/close/", HTTP_X_CSRFTOKEN=token).status_code == 200
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.CLOSED


def test_the_html_login_and_logout_need_the_token():
    make_user(Role.ANNOTATOR, username="eve", password="a-long-password")
    browser = Client(enforce_csrf_checks=True)
    assert browser.post("/login/", {"username": "eve", "password": "a-long-password"}).status_code == 403


def test_token_clients_need_no_csrf_token():
    annotator = make_user(Role.ANNOTATOR)
    batch = make_batch(comparisons=1)
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    assert client.post(f"/api/v1/batches/{batch.pk}/next/").status_code == 200
