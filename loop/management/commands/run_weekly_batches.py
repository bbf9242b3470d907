"""`manage.py run_weekly_batches`: what celery beat runs on Mondays, now."""

from typing import Any

from django.core.management.base import BaseCommand

from backend.batches.models import Batch
from loop.services.templates import weekly_batches_run


class Command(BaseCommand):
    help = (
        "For every active batch template, make this ISO week's batch (once per week, whatever the retries), "
        "sampled from the newest policy checkpoint and the one before it, open it once it has pairs, and close "
        "the template's batches of past weeks."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for weekly in weekly_batches_run():
            batch = Batch.objects.get(pk=weekly.batch_id)
            plan = ", ".join(sorted(c.name for c in batch.checkpoints.all()))
            problem = f" ({batch.sampling_error})" if batch.sampling_error else ""
            self.stdout.write(f"{batch.name}: {batch.status}, samples {plan}{problem}")
