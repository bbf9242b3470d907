"""Export builds run on the default queue: they read the database and write files, no GPU."""

from backend.jobs import durable_task, publish
from exports.services import export_build

EXPORT_SOFT_LIMIT_SECONDS = 3 * 3600


@durable_task("exports.tasks.export_build", soft_time_limit=EXPORT_SOFT_LIMIT_SECONDS, grace=120)
def export_build_task(run_id: int) -> str:
    return export_build(run_id=run_id).status


def enqueue_export(run_id: int) -> None:
    publish(export_build_task, run_id)
