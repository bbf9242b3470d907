"""Celery tasks of the annotation core: thin wrappers that call services."""

from celery import shared_task

from backend.batches.services.batches import batches_sync_schedule as _sync


@shared_task(name="backend.batches.tasks.batches_sync_schedule", acks_late=True, soft_time_limit=60, time_limit=90)
def batches_sync_schedule() -> dict[str, list[int]]:
    """Open and close batches on their schedule (celery beat runs this every minute)."""
    return _sync()
