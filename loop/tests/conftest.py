"""Loop fixtures: storage in a temporary folder, a tiny real policy, and a batch it sampled, judged by the
simulated annotator (prefers the shorter response)."""

from typing import Any

import pytest

from backend.batches.models import Batch
from backend.batches.services.batches import batch_create, batch_open
from backend.checkpoints.models import Checkpoint
from backend.checkpoints.services import checkpoint_register
from loop.services.simulated_annotator import simulated_annotate
from sampler.engines.tiny import build_tiny_checkpoint
from sampler.services import batch_start_sampling
from sampler.tasks import enqueue_chunk
from tests.factories import make_prompt

# Settings that keep every training step to seconds on a CPU with the tiny models.
TINY_CONFIG: dict[str, dict[str, Any]] = {
    "reward": {"batch_size": 4, "micro_batch_size": 4, "max_length": 64, "learning_rate": 1e-3},
    "rejection_sampling": {
        "samples_per_prompt": 2,
        "max_new_tokens": 8,
        "batch_size": 4,
        "micro_batch_size": 4,
        "generation_batch_size": 16,
        "max_length": 64,
    },
    "ppo": {
        "iterations": 2,
        "rollout_batch_size": 4,
        "minibatch_size": 2,
        "micro_batch_size": 2,
        "max_new_tokens": 8,
        "eval_every": 1,
        "eval_prompts": 2,
        "learning_rate": 1e-4,
    },
}


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.EXPORTS_ROOT = tmp_path / "exports"
    settings.CHECKPOINTS_ROOT = tmp_path / "checkpoints"
    settings.SAMPLER_ENGINE = "transformers"
    settings.SAMPLER_ENGINE_OPTIONS = {}


@pytest.fixture
def tiny_policy(tmp_path, db) -> Checkpoint:
    path = build_tiny_checkpoint(tmp_path / "tiny-policy", seed=0, eos_boost=4.0)
    checkpoint, _ = checkpoint_register(name="tiny-policy-0", path=str(path), produced_by="import")
    return checkpoint


def sampled_batch(policy: Checkpoint, *, name: str, prompts: int, capture) -> Batch:
    """A helpfulness batch of `prompts` pool prompts that `policy` answered at two temperatures, opened."""
    for i in range(prompts):
        make_prompt(f"Question {name} {i}: how do I say thanks?")
    batch, _ = batch_create(
        name=name,
        target_comparisons=prompts,
        created_by=None,
        checkpoint_ids=[policy.pk],
        temperatures=[0.7, 1.3],
        max_new_tokens=12,
        held_out_size=prompts,
        held_out_fraction=0.5,
    )
    with capture(execute=True):
        batch_start_sampling(batch=batch, enqueue=enqueue_chunk)
    return batch_open(batch=batch)


@pytest.fixture
def judged_batch(tiny_policy, django_capture_on_commit_callbacks) -> Batch:
    batch = sampled_batch(tiny_policy, name="week-1", prompts=12, capture=django_capture_on_commit_callbacks)
    assert simulated_annotate(batch=batch) == 12
    return batch
