"""Celery tasks on the `sampler` queue: thin, idempotent wrappers over `sampler.services`.

acks_late with reject_on_worker_lost: a task whose worker dies is delivered again, and the services
make a second run harmless (one pair per prompt and batch is a database constraint).
"""

from backend.batches.models import LivePair
from backend.jobs import durable_task, publish
from sampler import services

SAMPLING_SOFT_LIMIT_SECONDS = 1800


@durable_task("sampler.tasks.batch_sample_chunk", soft_time_limit=SAMPLING_SOFT_LIMIT_SECONDS)
def batch_sample_chunk(batch_id: int, prompt_ids: list[int]) -> int:
    return services.batch_sample_chunk(batch_id=batch_id, prompt_ids=prompt_ids)


@durable_task("sampler.tasks.live_pair_sample", soft_time_limit=300)
def live_pair_sample(live_pair_id: int) -> str:
    live_pair: LivePair = services.live_pair_sample(live_pair_id=live_pair_id)
    return live_pair.status


def enqueue_chunk(batch_id: int, prompt_ids: list[int]) -> None:
    publish(batch_sample_chunk, batch_id, prompt_ids)


def enqueue_live_pair(live_pair_id: int) -> None:
    publish(live_pair_sample, live_pair_id)
