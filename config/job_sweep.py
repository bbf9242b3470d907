"""The re-enqueue sweep (celery beat, every few minutes): jobs whose publish was lost are published again.

A job is lost when its row still waits (an export, training run or temperature scan `queued`, an iteration
`queued` or `running`, a live pair `pending`, a reward model's scoring request unfinished, a batch `sampling`)
JOB_REQUEUE_GRACE_SECONDS after it was created, and the broker holds no message for it, neither queued nor
delivered-and-unacknowledged (a running task's message stays unacknowledged until it finishes: acks_late).
Publishing twice is harmless: every task returns at once for a finished job. Exports, training runs and scans an
iteration made are left out: the iteration's own step runs them.
"""

import logging
from datetime import datetime, timedelta

from celery import Task
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from backend.batches.models import Batch, LivePair
from backend.checkpoints.models import TrainingRun
from backend.errors import ServiceError
from backend.jobs import JobKey, broker_jobs, durable_task, publish
from config.celery import app
from exports.models import ExportRun
from exports.tasks import export_build_task
from insights.models import ScoringRequest
from insights.tasks import response_scores_compute_task
from loop.models import Iteration, TemperatureScan
from loop.services.policy_runs import POLICY_KINDS
from loop.tasks import (
    iteration_step_task,
    policy_run_execute_task,
    temperature_scan_execute_task,
    training_run_execute_task,
)
from sampler.services import batch_start_sampling
from sampler.tasks import batch_sample_chunk, enqueue_chunk, live_pair_sample

logger = logging.getLogger(__name__)


def _iteration_owned(*fields: str) -> set[int]:
    rows = Iteration.objects.values_list(*fields)
    return {pk for row in rows for pk in row if pk is not None}


def waiting_jobs(*, cutoff: datetime) -> list[tuple[Task, int]]:
    """(task, id) of every job created before `cutoff` whose row says it has not finished."""
    jobs: list[tuple[Task, int]] = []
    exports = ExportRun.objects.filter(status=ExportRun.Status.QUEUED, created_at__lt=cutoff)
    exports = exports.exclude(pk__in=_iteration_owned("helpfulness_export", "safety_export"))
    jobs += [(export_build_task, pk) for pk in exports.values_list("pk", flat=True)]
    owned_runs = _iteration_owned("reward_helpfulness_run", "reward_safety_run", "rejection_sampling_run", "ppo_run")
    runs = TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED, created_at__lt=cutoff)
    for pk, kind in runs.exclude(pk__in=owned_runs).values_list("pk", "kind"):
        jobs.append((policy_run_execute_task if kind in POLICY_KINDS else training_run_execute_task, pk))
    scans = TemperatureScan.objects.filter(status=TemperatureScan.Status.QUEUED, created_at__lt=cutoff)
    scans = scans.exclude(pk__in=_iteration_owned("temperature_scan"))
    jobs += [(temperature_scan_execute_task, pk) for pk in scans.values_list("pk", flat=True)]
    iterations = Iteration.objects.filter(
        status__in=(Iteration.Status.QUEUED, Iteration.Status.RUNNING), created_at__lt=cutoff
    )
    jobs += [(iteration_step_task, pk) for pk in iterations.values_list("pk", flat=True)]
    live_pairs = LivePair.objects.filter(status=LivePair.Status.PENDING, created_at__lt=cutoff)
    jobs += [(live_pair_sample, pk) for pk in live_pairs.values_list("pk", flat=True)]
    scoring = ScoringRequest.objects.filter(finished_at=None, requested_at__lt=cutoff)
    jobs += [(response_scores_compute_task, pk) for pk in scoring.values_list("checkpoint_id", flat=True)]
    return jobs


def jobs_requeue_stale(*, now: datetime | None = None) -> list[JobKey]:
    """Publish again every waiting job the broker does not hold; returns what was published."""
    if app.conf.task_always_eager:
        return []
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.JOB_REQUEUE_GRACE_SECONDS)
    waiting = waiting_jobs(cutoff=cutoff)
    sampling = list(
        Batch.objects.filter(status=Batch.Status.SAMPLING, sampled_at__isnull=True, sampling_error="")
        .filter(created_at__lt=cutoff)
        .values_list("pk", flat=True)
    )
    try:
        held = broker_jobs()
    except OperationalError as error:
        logger.warning("Re-enqueue sweep skipped: the broker is unreachable (%s).", error)
        return []
    published: list[JobKey] = []
    for task, pk in waiting:
        if (task.name, (pk,)) not in held and publish(task, pk):
            published.append((task.name, (pk,)))
    busy = {args[0] for name, args in held if name == batch_sample_chunk.name and args}
    for batch in Batch.objects.filter(pk__in=sampling).exclude(pk__in=busy):
        try:
            queued = batch_start_sampling(batch=batch, enqueue=enqueue_chunk)
        except ServiceError as error:  # e.g. the pool ran dry: the batch says so when an admin resumes it
            logger.info("Batch %s not resumed by the sweep: %s", batch.pk, error)
            continue
        if queued["chunks"]:
            published.append((batch_sample_chunk.name, (batch.pk,)))
    if published:
        logger.warning("Re-enqueue sweep published %d lost job(s): %s", len(published), published)
    return published


@durable_task("backend.job_sweep.jobs_requeue_stale", soft_time_limit=120, grace=30, redeliver=False)
def jobs_requeue_stale_task() -> int:
    return len(jobs_requeue_stale())
