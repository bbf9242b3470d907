"""Celery tasks of the annotation core: thin wrappers that call services."""

from backend.batches.services.batches import batches_sync_schedule as _sync
from backend.batches.services.gold import gold_reviews_refresh as _gold_refresh
from backend.jobs import durable_task


@durable_task("backend.batches.tasks.batches_sync_schedule", soft_time_limit=60, grace=30, redeliver=False)
def batches_sync_schedule() -> dict[str, list[int]]:
    """Open and close batches on their schedule (celery beat runs this every minute)."""
    return _sync()


@durable_task("backend.batches.tasks.gold_reviews_refresh", soft_time_limit=300, redeliver=False)
def gold_reviews_refresh() -> dict[str, int]:
    """Recount gold accuracy and flag annotators below the threshold (celery beat runs this every 5 minutes)."""
    return _gold_refresh()
