"""Shared fixtures, and the rule that under CI the real PostgreSQL and Redis must be there.

Tests marked `postgres` or `redis` need the real servers. Locally they are skipped when
DATABASE_URL / CELERY_BROKER_URL do not point at them; under CI (CI=true) that is a failure.
"""

import os

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from backend.accounts.roles import Role
from backend.health import broker_status
from tests.factories import make_user

UNDER_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _database_is_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def _broker_is_redis() -> bool:
    return bool(os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"))


def pytest_sessionstart(session: pytest.Session) -> None:
    if not UNDER_CI:
        return
    problems = []
    if not _database_is_postgres():
        problems.append("DATABASE_URL does not point at PostgreSQL")
    if not _broker_is_redis():
        problems.append("CELERY_BROKER_URL does not point at Redis")
    if problems:
        pytest.exit("Under CI the real servers are required: " + "; ".join(problems), returncode=3)


def pytest_runtest_setup(item: pytest.Item) -> None:
    needs = {mark.name for mark in item.iter_markers()} & {"postgres", "redis"}
    missing = []
    if "postgres" in needs and not _database_is_postgres():
        missing.append("PostgreSQL (set DATABASE_URL=postgres://...)")
    if "redis" in needs and (not _broker_is_redis() or broker_status_real() != "ok"):
        missing.append("Redis (set CELERY_BROKER_URL=redis://... and start it)")
    if missing:
        message = "needs the real " + " and ".join(missing)
        if UNDER_CI:
            pytest.fail(message + " - required under CI", pytrace=False)
        pytest.skip(message)


def broker_status_real() -> str:
    """Broker reachability regardless of eager mode (tests run eager by default)."""
    eager = settings.CELERY_TASK_ALWAYS_EAGER
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", settings.CELERY_BROKER_URL)
    try:
        return broker_status()
    finally:
        settings.CELERY_TASK_ALWAYS_EAGER = eager


@pytest.fixture
def annotator(db):
    return make_user(Role.ANNOTATOR)


@pytest.fixture
def batch_admin(db):
    return make_user(Role.ADMIN)


@pytest.fixture
def researcher(db):
    return make_user(Role.RESEARCHER)


@pytest.fixture
def client_for():
    """An API client signed in (by token, as scripts do) as the given user; None gives an anonymous one."""

    def build(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user=user)
        return client

    return build


@pytest.fixture
def real_broker():
    """The project's Celery app sending to the real Redis broker (a database of its own, emptied), not eagerly."""
    from config.celery import app

    url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/14"
    previous = {key: app.conf[key] for key in ("task_always_eager", "broker_url")}
    app.conf.update(task_always_eager=False, broker_url=url)
    with app.connection_for_write() as connection:
        connection.default_channel.client.flushdb()
    yield app
    app.conf.update(previous)
