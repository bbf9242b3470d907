"""Export builds run on the default queue: they read the database and write files, no GPU."""

from celery import shared_task

from backend.jobs import publish
from exports.services import export_build

EXPORT_SOFT_LIMIT_SECONDS = 3 * 3600


@shared_task(
    name="exports.tasks.export_build",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=EXPORT_SOFT_LIMIT_SECONDS,
    time_limit=EXPORT_SOFT_LIMIT_SECONDS + 120,
)
def export_build_task(run_id: int) -> str:
    return export_build(run_id=run_id).status


def enqueue_export(run_id: int) -> None:
    publish(export_build_task, run_id)
