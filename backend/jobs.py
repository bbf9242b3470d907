"""Publishing Celery jobs so that a broker outage never fails a request and never loses the job.

Every enqueue site runs `publish` in `transaction.on_commit`: the job's row (an export, a training run,
an iteration, a live pair, a sampling batch) is committed first and is the record of the work. Publishing
retries briefly (PUBLISH_RETRY_POLICY, well under a second when Redis refuses connections), then logs
and gives up; the request still answers with the job queued. `config.job_sweep` publishes again, every
few minutes, whatever is still waiting after a grace period and is not held by the broker.
"""

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

from celery import Task, current_app, shared_task
from django.db import models
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

# Celery's own default (3 retries, 0.2 s apart) plus kombu's connection retries can hold a request for
# seconds while Redis is down; two quick retries cover a broker that blinks, the sweep covers the rest.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}
# Where kombu's Redis transport keeps messages delivered to a worker but not yet acknowledged.
UNACKED_HASH = "unacked"


class JobStatus(models.TextChoices):
    """Where a job's row stands (exports, training runs, iterations): the record of work that a task does."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


JobKey = tuple[str, tuple[Any, ...]]
"""(task name, positional arguments): a job as the broker and the sweep both see it."""


def durable_task(
    name: str, *, soft_time_limit: int, grace: int = 60, redeliver: bool = True
) -> Callable[[Callable[..., Any]], Task]:
    """A Celery task whose message is acknowledged only once it has run (acks_late): a task whose worker dies is
    delivered again (`redeliver`, reject_on_worker_lost), so every durable task must be idempotent. It is told to
    stop (SoftTimeLimitExceeded) after `soft_time_limit` seconds and killed `grace` seconds later.

    `name` is the task's wire name, which queued messages and beat's schedule rows carry: it stays as registered
    when the code moves. Beat's periodic tasks pass `redeliver=False`: the next beat sends them again anyway.
    """
    return shared_task(  # type: ignore[no-any-return]
        name=name,
        acks_late=True,
        reject_on_worker_lost=redeliver,
        soft_time_limit=soft_time_limit,
        time_limit=soft_time_limit + grace,
    )


def publish(task: Task, *args: Any) -> bool:
    """Send the task with a short retry; False (logged) when the broker is unreachable. Eager mode runs it here."""
    try:
        task.apply_async(args=args, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except OperationalError as error:
        logger.warning("Could not publish %s%r (%s); the re-enqueue sweep will publish it.", task.name, args, error)
        return False
    return True


def _job_of(message: dict[str, Any]) -> JobKey | None:
    """The task name and arguments of one kombu Redis message (protocol 2), or None for anything else."""
    task = message.get("headers", {}).get("task")
    body = message.get("body", "")
    if not task or not isinstance(body, str):
        return None
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body).decode()
    try:
        args = json.loads(body)[0]
    except (ValueError, IndexError, KeyError, TypeError):
        return None
    return task, _frozen(args)


def _frozen(value: Any) -> Any:
    """Lists as tuples, recursively, so arguments compare with the sweep's and can live in a set."""
    return tuple(_frozen(item) for item in value) if isinstance(value, list | tuple) else value


def broker_jobs() -> set[JobKey]:
    """Every job the broker holds: waiting in a queue, or delivered to a worker and not yet acknowledged."""
    messages: list[dict[str, Any]] = []
    with current_app.connection_for_read() as connection:
        client = connection.default_channel.client
        for queue in current_app.amqp.queues:
            messages.extend(json.loads(item) for item in client.lrange(queue, 0, -1))
        messages.extend(json.loads(entry)[0] for entry in client.hvals(UNACKED_HASH))
    jobs = (_job_of(message) for message in messages)
    return {job for job in jobs if job is not None}
