"""Loop tasks: the iteration driver on the `training` queue, and the weekly batch job (beat, default queue)."""

from celery import shared_task

from backend.checkpoints.tasks import TRAINING_SOFT_LIMIT_SECONDS
from backend.jobs import publish
from backend.loop.models import Iteration
from backend.loop.services.iterations import iteration_step
from backend.loop.services.templates import weekly_batches_run


@shared_task(
    name="training.iteration_step",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=TRAINING_SOFT_LIMIT_SECONDS,
    time_limit=TRAINING_SOFT_LIMIT_SECONDS + 300,
)
def iteration_step_task(iteration_id: int) -> str:
    """Run the iteration's current step, then queue the next one; a redelivery reruns the same step (idempotent)."""
    iteration = iteration_step(iteration_id=iteration_id)
    if iteration.status == Iteration.Status.RUNNING:
        enqueue_iteration(iteration.pk)
    return f"{iteration.status}:{iteration.step}"


def enqueue_iteration(iteration_id: int) -> None:
    publish(iteration_step_task, iteration_id)


@shared_task(name="backend.loop.tasks.weekly_batches", acks_late=True, soft_time_limit=3600, time_limit=3660)
def weekly_batches() -> list[int]:
    """Make this ISO week's batch of every active template and close last week's (beat: Mondays 00:00)."""
    return [weekly.batch_id for weekly in weekly_batches_run()]
