"""The broker (a private Redis) stops: annotation goes on, /healthz says degraded, and work queued meanwhile is
not lost: the export created during the outage is answered 202 (queued), and once Redis is back the re-enqueue
sweep, run by the real worker as beat would send it, publishes it and the worker builds it.
"""

import pytest
from rest_framework.authtoken.models import Token

from backend.accounts.roles import Role
from bench.harness.seeding import seed_annotators, seed_batch
from config.celery import app as celery_app
from config.job_sweep import jobs_requeue_stale_task
from exports.models import ExportRun
from tests.factories import make_user
from tests.reliability.annotators import Plan, run_annotators
from tests.reliability.checks import assert_database_matches
from tests.reliability.harness import report, request, start_worker, stop_worker, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ANNOTATORS = 4
SUBMISSIONS = 5


def send_sweep(broker_url: str) -> None:
    """Send the re-enqueue sweep to the worker through the broker, as beat does every few minutes."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        with celery_app.connection_for_write(broker_url) as broker:
            jobs_requeue_stale_task.apply_async(connection=broker)
    finally:
        celery_app.conf.task_always_eager = eager


def test_a_broker_outage_keeps_annotation_going_and_loses_no_queued_work(serve, private_redis, tmp_path):
    batch_id = seed_batch("outage", ANNOTATORS * SUBMISSIONS)
    users = seed_annotators("outage", ANNOTATORS)
    researcher = Token.objects.create(user=make_user(Role.RESEARCHER)).key
    app = serve(workers=2, CELERY_BROKER_URL=private_redis.url)
    worker = start_worker(private_redis.url, tmp_path / "worker.log", JOB_REQUEUE_GRACE_SECONDS="0")
    try:
        private_redis.stop()
        status, health, _ = request(app.port, "GET", "/healthz")
        assert (status, health["status"], health["database"]) == (200, "degraded", "ok"), health

        tally = run_annotators(app.port, users, Plan(batch_id=batch_id, submissions=SUBMISSIONS))
        assert not tally.problems, tally.problems[:5]
        assert len(tally.acknowledged) == ANNOTATORS * SUBMISSIONS

        body = {"filters": {"batches": [batch_id]}, "formats": ["jsonl"], "client_key": "during-outage"}
        status, export, seconds = request(app.port, "POST", "/api/v1/exports/", researcher, body)
        assert status == 202, export
        assert export["status"] == ExportRun.Status.QUEUED
        report(f"redis outage: export created in {seconds * 1000:.0f} ms with the broker down (202, queued)")

        private_redis.start()  # same port: the web app, the worker and the sweep reconnect on their own
        assert wait_for(lambda: request(app.port, "GET", "/healthz")[1]["status"] == "ok", 60)
        assert ExportRun.objects.get(pk=export["id"]).status == ExportRun.Status.QUEUED, "built before the sweep?"
        send_sweep(private_redis.url)
        assert wait_for(lambda: ExportRun.objects.get(pk=export["id"]).status == ExportRun.Status.DONE, 120), (
            tmp_path / "worker.log"
        ).read_text()[-3000:]
    finally:
        stop_worker(worker)

    run = ExportRun.objects.get(pk=export["id"])
    assert run.rows_written == ANNOTATORS * SUBMISSIONS
    assert_database_matches(batch_id, tally)
