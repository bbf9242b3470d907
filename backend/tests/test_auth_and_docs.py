"""Browser sessions need CSRF, scripts use tokens; the API documents itself without any CDN."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from backend.accounts.roles import Role
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_session_writes_require_a_csrf_token():
    make_user(Role.ANNOTATOR, username="ann", password="a-long-password")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="ann", password="a-long-password")
    response = client.post(reverse("prompt-list"), {"text": "Hello?"}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


def test_a_script_gets_a_token_and_uses_it():
    make_user(Role.RESEARCHER, username="res", password="a-long-password")
    client = APIClient()
    token = client.post(reverse("auth-token"), {"username": "res", "password": "a-long-password"}).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = client.get(reverse("me")).json()
    assert me["username"] == "res" and me["roles"] == ["researcher"]


def test_wrong_password_gets_no_token():
    make_user(Role.RESEARCHER, username="res2", password="a-long-password")
    response = APIClient().post(reverse("auth-token"), {"username": "res2", "password": "nope"})
    assert response.status_code == 400


def test_the_schema_and_docs_are_served_from_the_app_itself():
    client = APIClient()
    schema = client.get(reverse("schema"))
    assert schema.status_code == 200 and b"/api/v1/batches/{batch_id}/next/" in schema.content
    docs = client.get(reverse("docs"))
    html = docs.content.decode()
    assert docs.status_code == 200
    assert "cdn" not in html.lower() and "https://" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
