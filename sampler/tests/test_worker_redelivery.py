"""A real Celery worker is SIGKILLed mid-batch; another one finishes the batch with no duplicate pair.

Real PostgreSQL, real Redis, real worker processes, the real SmolLM2 checkpoint. The killed worker's
task was delivered but never acknowledged (acks_late), so Redis hands it out again once the
visibility timeout (5 s here) has passed; the one-pair-per-prompt constraint absorbs the rerun.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from backend.batches.models import Batch, Comparison, Response
from backend.batches.services.batches import batch_create
from backend.batches.services.prompts import prompt_create
from backend.checkpoints.services import checkpoint_register
from sampler.engines.smollm2 import prepare_smollm2_checkpoint
from sampler.services import batch_start_sampling
from sampler.tasks import enqueue_chunk

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = 8
CHUNK = 2


def start_worker(name: str, broker_url: str, log: Path) -> subprocess.Popen[bytes]:
    database = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings.test",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CELERY_BROKER_URL": broker_url,
        "CELERY_VISIBILITY_TIMEOUT": "5",
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "sampler", "--pool=solo"]
    command += ["--prefetch-multiplier=1", "-n", f"{name}@%h", "--loglevel=info"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_for(condition, seconds: float) -> bool:
    """Poll until `condition` holds; `seconds` only bounds a hung run (a loaded CPU makes SmolLM2 slow)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def pairs(batch: Batch) -> int:
    return Comparison.objects.filter(batch=batch).count()


def test_a_killed_worker_loses_no_work_and_duplicates_none(real_broker, tmp_path):
    policy_dir = prepare_smollm2_checkpoint(ROOT / "var" / "test-models" / "smollm2-135m-instruct")
    policy, _ = checkpoint_register(name="smollm2", path=str(policy_dir))
    for i in range(PROMPTS):
        prompt_create(text=f"Tell me one fact about the number {i}.", author=None)
    batch, _ = batch_create(
        name="kill-test",
        target_comparisons=PROMPTS,
        created_by=None,
        checkpoint_ids=[policy.pk],
        temperatures=[0.7, 1.2],
        max_new_tokens=32,
    )
    first = start_worker("first", real_broker.conf.broker_url, tmp_path / "first.log")
    second = None
    try:
        batch_start_sampling(batch=batch, enqueue=enqueue_chunk, chunk_size=CHUNK)
        assert wait_for(lambda: pairs(batch) >= 1, 900), (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        done_when_killed = pairs(batch)
        assert done_when_killed < PROMPTS, "the first worker finished before it could be killed"

        second = start_worker("second", real_broker.conf.broker_url, tmp_path / "second.log")
        finished = wait_for(lambda: pairs(batch) >= PROMPTS, 900)
        assert finished, (tmp_path / "second.log").read_text()[-3000:]
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=30)

    prompt_ids = list(Comparison.objects.filter(batch=batch).values_list("prompt_id", flat=True))
    assert len(prompt_ids) == len(set(prompt_ids)) == PROMPTS
    assert Response.objects.filter(prompt_id__in=prompt_ids).count() == 2 * PROMPTS
    batch.refresh_from_db()
    assert batch.sampled_at is not None and not batch.sampling_error
