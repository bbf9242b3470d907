"""The token and role caches: fewer queries per call, and a revoked token or role still takes effect."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from backend.accounts.roles import Role
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_repeated_calls_skip_the_token_and_role_queries():
    client = token_client(make_user(Role.ANNOTATOR))
    assert client.get(reverse("me")).status_code == 200
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("me"))
    assert response.status_code == 200
    assert response.json()["roles"] == ["annotator"]
    assert len(captured) == 0


def test_a_deleted_token_is_refused_on_the_next_call():
    user = make_user(Role.ANNOTATOR)
    client = token_client(user)
    assert client.get(reverse("me")).status_code == 200
    Token.objects.filter(user=user).get().delete()
    assert client.get(reverse("me")).status_code == 401


def test_a_deactivated_user_is_refused_on_the_next_call():
    user = make_user(Role.ANNOTATOR)
    client = token_client(user)
    assert client.get(reverse("me")).status_code == 200
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert client.get(reverse("me")).status_code == 401


@pytest.mark.parametrize("how", ["user", "group"])
def test_a_role_taken_away_is_refused_on_the_next_call(how):
    user = make_user(Role.ANNOTATOR)
    client = token_client(user)
    assert client.get(reverse("me")).json()["roles"] == ["annotator"]
    group = Group.objects.get(name=Role.ANNOTATOR.value)
    if how == "user":
        user.groups.remove(group)
    else:
        group.user_set.remove(user)
    assert client.get(reverse("me")).status_code == 403


def test_with_the_cache_off_every_call_reads_token_and_roles(settings):
    settings.AUTH_CACHE_SECONDS = 0
    client = token_client(make_user(Role.ANNOTATOR))
    assert client.get(reverse("me")).status_code == 200
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("me")).status_code == 200
    assert len(captured) == 2
