"""Celery tasks of the annotation core: thin wrappers that call services."""

from celery import shared_task

from backend.batches.services.batches import batches_sync_schedule as _sync
from backend.batches.services.gold import gold_reviews_refresh as _gold_refresh


@shared_task(name="backend.batches.tasks.batches_sync_schedule", acks_late=True, soft_time_limit=60, time_limit=90)
def batches_sync_schedule() -> dict[str, list[int]]:
    """Open and close batches on their schedule (celery beat runs this every minute)."""
    return _sync()


@shared_task(name="backend.batches.tasks.gold_reviews_refresh", acks_late=True, soft_time_limit=300, time_limit=360)
def gold_reviews_refresh() -> dict[str, int]:
    """Recount gold accuracy and flag annotators below the threshold (celery beat runs this every 5 minutes)."""
    return _gold_refresh()
