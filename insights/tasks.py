"""Scoring responses with a reward model runs on the `training` queue, where the reward models' GPUs are."""

from backend.jobs import durable_task, publish
from insights.services import response_scores_compute


@durable_task("training.response_scores_compute", soft_time_limit=3600)
def response_scores_compute_task(checkpoint_id: int) -> int:
    return response_scores_compute(checkpoint_id=checkpoint_id)


def enqueue_response_scores(checkpoint_id: int) -> None:
    publish(response_scores_compute_task, checkpoint_id)
