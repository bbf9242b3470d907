"""A batch's pairs over its whole design: pre-sampled chunks and live pairs alike, on tiny models."""

from collections import Counter
from pathlib import Path

import pytest

from backend.batches.models import Batch, Comparison
from backend.batches.services.batches import batch_create, batch_open
from backend.batches.services.prompts import prompt_create
from backend.checkpoints.services import checkpoint_register
from sampler import services
from sampler.engines.tiny import build_tiny_checkpoint

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("balanced")
    return [build_tiny_checkpoint(root / name, seed=seed, eos_boost=4.0) for seed, name in enumerate("ab", start=1)]


def two_checkpoint_batch(tiny_dirs: list[Path], *, target: int, writes: bool = False) -> Batch:
    checkpoints = [checkpoint_register(name=f"policy-{i}", path=str(path))[0] for i, path in enumerate(tiny_dirs)]
    batch, _ = batch_create(
        name=f"balanced-{target}-{writes}",
        target_comparisons=target,
        created_by=None,
        checkpoint_ids=[c.pk for c in checkpoints],
        temperatures=[0.7, 1.0],
        max_new_tokens=2,
        annotators_write_prompts=writes,
    )
    return batch


def combinations_of(batch: Batch) -> Counter[tuple[int, float, int, float]]:
    return Counter(
        Comparison.objects.filter(batch=batch).values_list(
            "first_response__checkpoint_id",
            "first_response__temperature",
            "second_response__checkpoint_id",
            "second_response__temperature",
        )
    )


def test_a_batch_sampled_in_chunks_draws_every_combination_equally(tiny_dirs, django_capture_on_commit_callbacks):
    batch = two_checkpoint_batch(tiny_dirs, target=64)
    for i in range(64):
        prompt_create(text=f"Balanced prompt {i}?", author=None)
    chunks: list[list[int]] = []
    with django_capture_on_commit_callbacks(execute=True):
        services.batch_start_sampling(batch=batch, enqueue=lambda _, ids: chunks.append(ids), chunk_size=12)
    for ids in chunks:
        services.batch_sample_chunk(batch_id=batch.pk, prompt_ids=ids)
    combinations = combinations_of(batch)
    # Two checkpoints x two temperatures on each side: four combinations, 16 each, each within one of equal.
    assert len(combinations) == 4 and sum(combinations.values()) == 64
    assert max(combinations.values()) - min(combinations.values()) <= 1
    sides = Counter(
        side
        for first_ckpt, first_t, second_ckpt, second_t in combinations.elements()
        for side in ((first_ckpt, first_t), (second_ckpt, second_t))
    )
    assert len(sides) == 4 and set(sides.values()) == {32}


def test_live_pairs_in_a_row_walk_the_design(tiny_dirs, annotator):
    batch = two_checkpoint_batch(tiny_dirs, target=1, writes=True)
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.SAMPLING)
    services.batch_sample_chunk(batch_id=batch.pk, prompt_ids=[prompt_create(text="Pool prompt?", author=None)[0].pk])
    batch = batch_open(batch=batch)
    for i in range(20):
        live_pair, _ = services.live_pair_request(
            batch=batch, annotator=annotator, enqueue=lambda _: None, text=f"My own question {i}?"
        )
        services.live_pair_sample(live_pair_id=live_pair.pk)
    combinations = combinations_of(batch)
    assert sum(combinations.values()) == 21 and len(combinations) == 4
    assert max(combinations.values()) - min(combinations.values()) <= 1
