"""The loop's tasks: reward-model and policy runs, temperature scans and the iteration driver on the `training`
queue (GPU workers in production), and the weekly batch job (beat, default queue). They take ids and call
services."""

from backend.jobs import durable_task, publish
from loop.models import Iteration
from loop.services.iterations import iteration_step
from loop.services.policy_runs import policy_run_execute
from loop.services.temperature_scans import temperature_scan_execute
from loop.services.templates import weekly_batches_run
from loop.services.training_runs import training_run_execute

TRAINING_SOFT_LIMIT_SECONDS = 24 * 3600


@durable_task("training.reward_model", soft_time_limit=TRAINING_SOFT_LIMIT_SECONDS, grace=300)
def training_run_execute_task(run_id: int) -> str:
    return training_run_execute(run_id=run_id).status


def enqueue_training_run(run_id: int) -> None:
    publish(training_run_execute_task, run_id)


@durable_task("training.policy_run", soft_time_limit=TRAINING_SOFT_LIMIT_SECONDS, grace=300)
def policy_run_execute_task(run_id: int) -> str:
    return policy_run_execute(run_id=run_id).status


@durable_task("training.temperature_scan", soft_time_limit=TRAINING_SOFT_LIMIT_SECONDS, grace=300)
def temperature_scan_execute_task(scan_id: int) -> str:
    """Scan a policy checkpoint's temperatures; a redelivery of a finished scan returns at once."""
    return temperature_scan_execute(scan_id=scan_id).status


def enqueue_temperature_scan(scan_id: int) -> None:
    publish(temperature_scan_execute_task, scan_id)


@durable_task("training.iteration_step", soft_time_limit=TRAINING_SOFT_LIMIT_SECONDS, grace=300)
def iteration_step_task(iteration_id: int) -> str:
    """Run the iteration's current step, then queue the next one; a redelivery reruns the same step (idempotent)."""
    iteration = iteration_step(iteration_id=iteration_id)
    if iteration.status == Iteration.Status.RUNNING:
        enqueue_iteration(iteration.pk)
    return f"{iteration.status}:{iteration.step}"


def enqueue_iteration(iteration_id: int) -> None:
    publish(iteration_step_task, iteration_id)


@durable_task("backend.loop.tasks.weekly_batches", soft_time_limit=3600, redeliver=False)
def weekly_batches() -> list[int]:
    """Make this ISO week's batch of every active template and close last week's (beat: Mondays 00:00)."""
    return [weekly.batch_id for weekly in weekly_batches_run()]
