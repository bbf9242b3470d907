"""The GPU sampler's command line from docker-compose.yml runs a real worker that fills a batch.

The compose file's `command` for the sampler service, run as it is (`celery` from this virtualenv), with
its vLLM settings, on the test's PostgreSQL and Redis, with the transformers engine and tiny checkpoints
in place of vLLM and a GPU. A chunk of a real batch goes through the broker; its pairs land in the database.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backend.batches.models import Comparison, Response
from backend.batches.services.batches import batch_create
from backend.batches.services.prompts import prompt_create
from backend.checkpoints.services import checkpoint_register
from sampler.engines.tiny import build_tiny_checkpoint
from sampler.services import batch_start_sampling
from sampler.tasks import enqueue_chunk
from tests.reliability.harness import database_environment, stop_worker, wait_for
from tests.test_docker_compose import command_segments, environment, load_compose

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "sampler"
PROMPTS = 4
CHUNK = 2
WAIT_SECONDS = 600  # bounds a hung run; a loaded two-core machine starts the worker in well under a minute


def compose_worker_command(service: str) -> list[str]:
    """The service's `celery ... worker` command, with this virtualenv's celery."""
    (tokens,) = command_segments(load_compose()["services"][service])
    assert tokens[0] == "celery", tokens
    return [str(Path(sys.executable).with_name("celery")), *tokens[1:]]


def worker_environment(broker_url: str, storage: Path) -> dict[str, str]:
    """The test database and broker, the service's own engine settings, and transformers in place of vLLM."""
    service = environment(load_compose()["services"][SERVICE])
    own = {key: value for key, value in service.items() if key.startswith(("VLLM_", "SAMPLER_"))}
    return (
        database_environment()
        | own
        | {
            "CELERY_BROKER_URL": broker_url,
            "STORAGE_ROOT": str(storage),
            "SAMPLER_ENGINE": "transformers",
            "SAMPLER_ENGINE_OPTIONS": "{}",
        }
    )


def test_the_compose_sampler_command_fills_a_batch(real_broker, tmp_path: Path) -> None:
    paths = [build_tiny_checkpoint(tmp_path / f"tiny-{seed}", seed=seed, eos_boost=4.0) for seed in (1, 2)]
    checkpoints = [checkpoint_register(name=path.name, path=str(path))[0] for path in paths]
    for i in range(PROMPTS):
        prompt_create(text=f"Name one colour, number {i}.", author=None)
    batch, _ = batch_create(
        name="compose-worker",
        target_comparisons=PROMPTS,
        created_by=None,
        checkpoint_ids=[c.pk for c in checkpoints],
        temperatures=[0.7, 1.0],
        max_new_tokens=8,
    )
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        compose_worker_command(SERVICE),
        cwd=ROOT,
        env=worker_environment(real_broker.conf.broker_url, tmp_path / "storage"),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        batch_start_sampling(batch=batch, enqueue=enqueue_chunk, chunk_size=CHUNK)
        filled = wait_for(lambda: Comparison.objects.filter(batch=batch).count() >= PROMPTS, WAIT_SECONDS)
        assert filled, log.read_text()[-3000:]
    finally:
        stop_worker(worker)

    assert "(solo)" in log.read_text(), "the worker did not run the solo pool"
    comparisons = Comparison.objects.filter(batch=batch)
    assert comparisons.count() == PROMPTS
    responses = Response.objects.filter(prompt_id__in=comparisons.values("prompt_id"))
    assert responses.count() == 2 * PROMPTS
    assert {r.checkpoint_id for r in responses} == {c.pk for c in checkpoints}
    batch.refresh_from_db()
    assert batch.sampled_at is not None and not batch.sampling_error
