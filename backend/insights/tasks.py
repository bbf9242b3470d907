"""Scoring responses with a reward model runs on the `training` queue, where the reward models' GPUs are."""

from celery import shared_task

from backend.insights.services import response_scores_compute
from backend.jobs import publish


@shared_task(
    name="training.response_scores_compute",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=3600,
    time_limit=3660,
)
def response_scores_compute_task(checkpoint_id: int) -> int:
    return response_scores_compute(checkpoint_id=checkpoint_id)


def enqueue_response_scores(checkpoint_id: int) -> None:
    publish(response_scores_compute_task, checkpoint_id)
