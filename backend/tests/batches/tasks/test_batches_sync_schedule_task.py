"""The schedule task travels through the real Redis broker to a real Celery worker."""

import os
import time
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from backend.batches.models import Batch
from backend.batches.tasks import batches_sync_schedule
from config.celery import app
from tests.factories import make_batch

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker_app():
    """The project's Celery app pointed at the real broker, not eager, for the length of a test."""
    previous = {key: app.conf[key] for key in ("task_always_eager", "broker_url")}
    app.conf.update(task_always_eager=False, broker_url=os.environ["CELERY_BROKER_URL"])
    yield app
    app.conf.update(previous)


def test_a_queued_task_runs_on_a_worker_and_opens_the_due_batch(broker_app):
    due = make_batch(comparisons=2, open_it=False, opens_at=timezone.now() - timedelta(minutes=1))
    with start_worker(broker_app, queues=["default"], perform_ping_check=False, shutdown_timeout=10):
        batches_sync_schedule.apply_async(queue="default")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Batch.objects.get(pk=due.pk).status != Batch.Status.OPEN:
            time.sleep(0.2)
    assert Batch.objects.get(pk=due.pk).status == Batch.Status.OPEN
