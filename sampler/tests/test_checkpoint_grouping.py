"""Each checkpoint is loaded once per batch: generation is grouped by checkpoint, the loaded one first."""

from itertools import pairwise
from pathlib import Path

import pytest

from backend.batches.models import Batch, Comparison
from backend.batches.services.batches import batch_create
from backend.batches.services.prompts import prompt_create
from backend.checkpoints.services import checkpoint_register
from sampler import services
from sampler.engines import GenerationRequest, transformers_engine
from sampler.engines.tiny import build_tiny_checkpoint
from sampler.engines.transformers_engine import TransformersEngine

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("grouping")
    # No EOS boost: over a ~400-token vocabulary two sides almost never come out the same, so no pair needs the
    # identical-pair re-draw (a second engine call, which may switch models once more).
    return [build_tiny_checkpoint(root / name, seed=seed) for seed, name in enumerate("ab", start=1)]


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """Every checkpoint the transformers engine loads from disk, in order."""
    loaded: list[str] = []
    real = transformers_engine.load_checkpoint

    def counting(checkpoint: str, **kwargs):
        loaded.append(Path(checkpoint).name)
        return real(checkpoint, **kwargs)

    monkeypatch.setattr(transformers_engine, "load_checkpoint", counting)
    return loaded


@pytest.fixture
def generate_calls(monkeypatch) -> list[int]:
    """The size of every engine call the sampler makes."""
    calls: list[int] = []
    real = TransformersEngine.generate

    def counting(self, requests):
        calls.append(len(requests))
        return real(self, requests)

    monkeypatch.setattr(TransformersEngine, "generate", counting)
    return calls


def two_checkpoint_batch(tiny_dirs: list[Path], name: str, prompts: int) -> Batch:
    checkpoints = [checkpoint_register(name=f"policy-{path.name}", path=str(path))[0] for path in tiny_dirs]
    batch, _ = batch_create(
        name=name,
        target_comparisons=prompts,
        created_by=None,
        checkpoint_ids=[c.pk for c in checkpoints],
        temperatures=[0.7, 1.0],
        max_new_tokens=8,
    )
    for i in range(prompts):
        prompt_create(text=f"{name} prompt {i}?", author=None)
    return batch


def sample_all(batch: Batch, django_capture_on_commit_callbacks, chunk_size: int | None = None) -> None:
    chunks: list[list[int]] = []
    with django_capture_on_commit_callbacks(execute=True):
        services.batch_start_sampling(batch=batch, enqueue=lambda _, ids: chunks.append(ids), chunk_size=chunk_size)
    for ids in chunks:
        services.batch_sample_chunk(batch_id=batch.pk, prompt_ids=ids)


def test_a_64_prompt_batch_over_two_checkpoints_loads_exactly_two_models(
    tiny_dirs, loads, generate_calls, settings, django_capture_on_commit_callbacks
):
    # One model in memory at a time, as the vllm engine keeps on a GPU by default: the worst case.
    settings.SAMPLER_ENGINE_OPTIONS = {"max_loaded_models": 1, "batch_size": 16}
    batch = two_checkpoint_batch(tiny_dirs, "grouping-64", 64)
    sample_all(batch, django_capture_on_commit_callbacks)
    assert Comparison.objects.filter(batch=batch).count() == 64
    assert generate_calls == [128]  # one call for the whole batch, no re-draw
    assert sorted(loads) == ["a", "b"]


def test_chunks_start_with_the_checkpoint_left_loaded(
    tiny_dirs, loads, generate_calls, settings, django_capture_on_commit_callbacks
):
    settings.SAMPLER_ENGINE_OPTIONS = {"max_loaded_models": 1, "batch_size": 8}
    batch = two_checkpoint_batch(tiny_dirs, "grouping-chunks", 48)
    sample_all(batch, django_capture_on_commit_callbacks, chunk_size=16)
    # Three chunks: each one switches once, starting with the checkpoint the chunk before it ended on.
    assert generate_calls == [32, 32, 32]
    assert len(loads) == 4 and all(first != second for first, second in pairwise(loads))


def test_one_call_over_interleaved_checkpoints_loads_each_once(tiny_dirs, loads):
    engine = TransformersEngine(device="cpu", batch_size=4, max_loaded_models=1)
    question = [{"role": "user", "content": "Hi?"}]
    requests = [
        GenerationRequest(question, checkpoint=str(tiny_dirs[i % 2]), temperature=t, max_new_tokens=2, seed=i)
        for i, t in enumerate([0.7, 1.0, 1.0, 0.7, 0.7, 1.0])
    ]
    results = engine.generate(requests)
    assert len(results) == 6 and loads == ["a", "b"]
    engine.generate(requests)  # b is loaded now, so it goes first: one more load, of a
    assert loads == ["a", "b", "a"]
