"""What clients get when something fails on the server: a database outage is a 503 to retry, not a 500."""

import pytest
from django.db import OperationalError
from django.test import Client

from backend.accounts import apis as account_apis
from backend.accounts.roles import Role
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in() -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(make_user(Role.ANNOTATOR))
    return client


def test_a_lost_database_connection_is_a_503_with_retry_after(signed_in, monkeypatch):
    def database_gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(account_apis.MeApi, "get", database_gone)
    response = signed_in.get("/api/v1/me/")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json()["code"] == "database_unavailable" and "retry" in response.json()["detail"]


def test_other_failures_are_a_json_500_under_the_api(signed_in, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError

    monkeypatch.setattr(account_apis.MeApi, "get", bug)
    response = signed_in.get("/api/v1/me/")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error.", "code": "server_error"}
