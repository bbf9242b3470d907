"""Sign-in is rate-limited per username and address: failures past the limit get 429 with Retry-After."""

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from backend.accounts.login_throttle import TOO_MANY_FAILURES
from tests.factories import make_user

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-password"


@pytest.fixture(autouse=True)
def limit(settings):
    cache.clear()
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 600
    yield 3
    cache.clear()


def token_attempt(username: str, password: str, address: str = "10.0.0.1"):
    return APIClient(REMOTE_ADDR=address).post(
        "/api/v1/auth/token/", {"username": username, "password": password}, format="json"
    )


def test_the_token_endpoint_refuses_after_the_limit_even_the_right_password(limit):
    user = make_user(username="ann", password=PASSWORD)
    assert [token_attempt("ann", "wrong").status_code for _ in range(limit)] == [400] * limit
    refused = token_attempt("ann", PASSWORD)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 600
    assert refused.json()["detail"] == TOO_MANY_FAILURES.format(minutes=10)
    # Another address, and another username from the same address, are not held back.
    assert token_attempt("ann", PASSWORD, address="10.0.0.2").json()["token"]
    make_user(username="bob", password=PASSWORD)
    assert token_attempt("bob", PASSWORD).status_code == 200
    assert user.auth_token.key


def test_the_html_login_counts_with_the_api_and_refuses_with_429(limit):
    make_user(username="cara", password=PASSWORD)
    for _ in range(limit - 1):
        assert token_attempt("cara", "wrong").status_code == 400
    browser = Client(REMOTE_ADDR="10.0.0.1")
    page = browser.post("/login/", {"username": "cara", "password": "wrong"})
    assert page.status_code == 200 and b"did not match" in page.content
    refused = browser.post("/login/", {"username": "CARA", "password": PASSWORD})
    assert refused.status_code == 429 and refused["Retry-After"]
    assert "Too many failed sign-in attempts" in refused.content.decode()
    assert "_auth_user_id" not in browser.session


def test_failures_below_the_limit_do_not_block(limit):
    make_user(username="dan", password=PASSWORD)
    for _ in range(limit - 1):
        token_attempt("dan", "wrong")
    assert token_attempt("dan", PASSWORD).status_code == 200
