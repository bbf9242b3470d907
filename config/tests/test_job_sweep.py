"""The re-enqueue sweep against the real Redis broker: a lost job is published again, a held or finished one is not."""

from datetime import timedelta

import pytest
from django.utils import timezone

from backend.jobs import broker_jobs, publish
from config.job_sweep import jobs_requeue_stale
from exports.models import ExportRun
from exports.tasks import export_build_task

pytestmark = [pytest.mark.redis, pytest.mark.django_db]

LATER = timedelta(hours=1)
"""`now` for the sweep: past every job's grace period."""


def queued_export(**fields) -> ExportRun:
    return ExportRun.objects.create(formats=["jsonl"], **fields)


def test_a_queued_job_the_broker_does_not_hold_is_published_once(real_broker):
    lost = queued_export()
    done = queued_export(status=ExportRun.Status.DONE)

    published = jobs_requeue_stale(now=timezone.now() + LATER)

    assert published == [(export_build_task.name, (lost.pk,))]
    assert (export_build_task.name, (done.pk,)) not in broker_jobs()
    assert jobs_requeue_stale(now=timezone.now() + LATER) == [], "published again although the broker holds it"


def test_a_job_within_its_grace_period_or_held_by_the_broker_is_left_alone(real_broker):
    fresh = queued_export()
    held = queued_export()
    assert publish(export_build_task, held.pk)
    assert (export_build_task.name, (held.pk,)) in broker_jobs()

    assert jobs_requeue_stale(now=timezone.now()) == []
    assert jobs_requeue_stale(now=timezone.now() + LATER) == [(export_build_task.name, (fresh.pk,))]
