"""Training tasks run on the `training` queue (GPU workers in production); they take ids and call services."""

from celery import shared_task

from backend.checkpoints.policy_runs import policy_run_execute
from backend.checkpoints.training_runs import training_run_execute
from backend.jobs import publish

TRAINING_SOFT_LIMIT_SECONDS = 24 * 3600


@shared_task(
    name="training.reward_model",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=TRAINING_SOFT_LIMIT_SECONDS,
    time_limit=TRAINING_SOFT_LIMIT_SECONDS + 300,
)
def training_run_execute_task(run_id: int) -> str:
    return training_run_execute(run_id=run_id).status


def enqueue_training_run(run_id: int) -> None:
    publish(training_run_execute_task, run_id)


@shared_task(
    name="training.policy_run",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=TRAINING_SOFT_LIMIT_SECONDS,
    time_limit=TRAINING_SOFT_LIMIT_SECONDS + 300,
)
def policy_run_execute_task(run_id: int) -> str:
    return policy_run_execute(run_id=run_id).status


def enqueue_policy_run(run_id: int) -> None:
    publish(policy_run_execute_task, run_id)
