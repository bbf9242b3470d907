import pytest
from django.db import OperationalError, connection
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthy_in_eager_mode():
    body = Client().get("/healthz").json()
    assert body == {"status": "ok", "database": "ok", "broker": "eager"}


def test_a_dead_broker_is_degraded_not_failing(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded" and response.json()["broker"].startswith("down")


def test_a_dead_database_is_a_503(monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)
    response = Client().get("/healthz")
    assert response.status_code == 503 and response.json()["status"] == "down"


@pytest.mark.redis
def test_the_real_redis_broker_is_ok(settings):
    import os

    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]
    assert Client().get("/healthz").json()["broker"] == "ok"
