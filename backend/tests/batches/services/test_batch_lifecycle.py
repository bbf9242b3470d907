import math
import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from backend.batches.models import Batch, Comparison
from backend.batches.services import batches as svc
from backend.batches.services.comparisons import ResponseInput, split_draw
from backend.batches.services.gold import gold_comparison_create
from backend.checkpoints.models import CheckpointKind
from backend.errors import Conflict, InvalidInput
from tests.factories import make_batch, make_checkpoint, make_comparison, make_prompt

pytestmark = pytest.mark.django_db


def create(**overrides):
    checkpoints = overrides.pop("checkpoints", None) or [make_checkpoint(), make_checkpoint()]
    values: dict[str, Any] = {
        "name": "week 48 helpfulness",
        "target_comparisons": 100,
        "created_by": None,
        "checkpoint_ids": [c.pk for c in checkpoints],
        "temperatures": [0.7, 1.0],
    }
    values.update(overrides)
    return svc.batch_create(**values)


def test_create_makes_a_draft_with_its_sampling_plan():
    batch, created = create(iso_week="2026-W48", overlap=3)
    assert created and batch.status == Batch.Status.DRAFT
    assert batch.iso_week == "2026-W48" and batch.overlap == 3
    assert batch.checkpoints.count() == 2 and batch.temperatures == [0.7, 1.0]


def test_a_retried_create_returns_the_same_batch_and_a_changed_one_is_refused():
    checkpoints = [make_checkpoint(), make_checkpoint()]
    first, _ = create(checkpoints=checkpoints)
    again, created = create(checkpoints=checkpoints)
    assert again.pk == first.pk and not created
    with pytest.raises(InvalidInput, match=re.escape(svc.NAME_TAKEN)):
        create(checkpoints=checkpoints, target_comparisons=5)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "  "}, "name"),
        ({"focus": "fun"}, "focus"),
        ({"iso_week": "2026-48"}, "iso_week"),
        ({"temperatures": [0.7, 3.0]}, "temperatures"),
        ({"temperatures": ["hot"]}, "temperatures"),
        ({"top_p": 0}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"checkpoint_ids": [999999]}, "checkpoints"),
        ({"target_comparisons": 0}, "target_comparisons"),
        ({"overlap": 0}, "overlap"),
        ({"overlap": 11}, "overlap"),
        ({"held_out_size": -1}, "held_out_size"),
        ({"held_out_fraction": 0.9}, "held_out_fraction"),
        ({"gold_rate": 0.6}, "gold_rate"),
        ({"gold_rate": -0.1}, "gold_rate"),
        ({"selection": "random"}, "selection"),
        ({"selection": "uncertain"}, "selection_checkpoint"),
        ({"selection_checkpoint_id": 999999}, "selection_checkpoint"),
    ],
)
def test_bad_settings_name_the_field(overrides, field):
    with pytest.raises(InvalidInput) as error:
        create(**overrides)
    assert error.value.field == field
    assert not Batch.objects.exists()


def test_a_plan_must_vary_the_checkpoint_or_the_temperature():
    single = make_checkpoint()
    with pytest.raises(InvalidInput, match=re.escape(svc.PLAN_NOT_DIVERSE)):
        create(checkpoints=[single], temperatures=[0.7])
    batch, _ = create(checkpoints=[single], temperatures=[0.7, 1.2])
    assert batch.pk


def test_reward_models_cannot_be_sampled_from():
    reward = make_checkpoint(kind=CheckpointKind.REWARD_SAFETY)
    with pytest.raises(InvalidInput, match="reward models"):
        create(checkpoints=[make_checkpoint(), reward])


def test_closes_at_must_follow_opens_at():
    now = timezone.now()
    with pytest.raises(InvalidInput, match=re.escape(svc.CLOSES_BEFORE_OPENS)):
        create(opens_at=now, closes_at=now - timedelta(hours=1))


def _held_out(batch: Batch) -> set[int]:
    return set(Comparison.objects.filter(batch=batch, is_held_out=True).values_list("id", flat=True))


def within_binomial_tolerance(count: int, trials: int, fraction: float, sigmas: float = 4.0) -> bool:
    """Whether `count` successes in `trials` is a plausible draw at `fraction` (within `sigmas` deviations)."""
    return abs(count - trials * fraction) <= sigmas * math.sqrt(trials * fraction * (1 - fraction))


def test_each_pair_gets_its_split_when_it_is_made_and_opening_keeps_it():
    batch = make_batch(comparisons=60, open_it=False, held_out_size=1000)
    held_out = _held_out(batch)
    assert within_binomial_tolerance(len(held_out), 60, 0.1)
    opened = svc.batch_open(batch=batch)
    assert opened.status == Batch.Status.OPEN and opened.opened_at is not None
    assert _held_out(batch) == held_out
    # Pairs made after opening are split as they come, at the same fraction.
    more = [make_comparison(opened) for _ in range(140)]
    assert within_binomial_tolerance(sum(c.is_held_out for c in more), 140, 0.1)


def test_the_split_is_a_function_of_the_batch_and_the_prompt():
    batch = make_batch(comparisons=0, open_it=False, held_out_size=1000, held_out_fraction=0.5)
    prompts = [make_prompt() for _ in range(40)]
    made = {p.pk: make_comparison(batch, prompt=p).is_held_out for p in prompts}
    assert 0 < sum(made.values()) < 40
    expected = {p.pk: split_draw(batch.pk, p.pk) < 0.5 for p in prompts}
    assert made == expected


def test_held_out_size_caps_the_test_split():
    batch = make_batch(comparisons=80, open_it=False, held_out_size=3, held_out_fraction=0.5)
    assert len(_held_out(batch)) == 3


def test_a_prompt_sampled_again_in_a_later_batch_keeps_its_split():
    first = make_batch(comparisons=0, open_it=False, held_out_size=1000, held_out_fraction=0.5)
    later = make_batch(comparisons=0, open_it=False, held_out_size=1000, held_out_fraction=0.5)
    prompts = [make_prompt() for _ in range(30)]
    before = [make_comparison(first, prompt=p).is_held_out for p in prompts]
    after = [make_comparison(later, prompt=p).is_held_out for p in prompts]
    assert after == before and 0 < sum(before) < 30


def test_an_empty_batch_cannot_open_and_a_closed_one_cannot_reopen():
    empty, _ = create()
    with pytest.raises(Conflict, match=re.escape(svc.BATCH_EMPTY)):
        svc.batch_open(batch=empty)
    closed = svc.batch_close(batch=make_batch(comparisons=1))
    assert svc.batch_close(batch=closed).closed_at == closed.closed_at
    with pytest.raises(Conflict, match=re.escape(svc.BATCH_CLOSED)):
        svc.batch_open(batch=closed)


def test_the_schedule_opens_and_closes_batches_on_time():
    now = timezone.now()
    due = make_batch(comparisons=2, open_it=False, opens_at=now - timedelta(minutes=1))
    not_yet = make_batch(comparisons=2, open_it=False, opens_at=now + timedelta(days=1))
    ending = make_batch(comparisons=2, opens_at=now - timedelta(days=7), closes_at=now - timedelta(minutes=1))
    result = svc.batches_sync_schedule(now=now)
    assert result == {"opened": [due.pk], "closed": [ending.pk]}
    assert Batch.objects.get(pk=not_yet.pk).status == Batch.Status.DRAFT


def test_comparisons_keep_their_generation_parameters():
    batch = make_batch(comparisons=0, open_it=False)
    comparison = make_comparison(batch)
    assert comparison.first_response.temperature == 0.7 and comparison.first_response.seed == 1
    assert comparison.second_response.temperature == 1.0


def test_empty_guidelines_get_the_focus_defaults():
    helpful, _ = create(name="h")
    safety, _ = create(name="s", focus="safety")
    assert "fulfils the request" in helpful.guidelines
    assert "Adversarial prompts" in safety.guidelines


def test_a_nul_in_model_output_is_stored_as_a_replacement_character():
    batch = make_batch(comparisons=0, open_it=False)
    comparison = make_comparison(batch, texts=("fine", "bro\x00ken"))
    assert comparison.second_response.text == "bro\ufffdken"


def test_gold_rate_and_uncertainty_selection_are_set_at_creation():
    reward = make_checkpoint(kind=CheckpointKind.REWARD_HELPFULNESS)
    batch, _ = create(gold_rate=0.2, selection="uncertain", selection_checkpoint_id=reward.pk)
    batch.refresh_from_db()
    assert (batch.gold_rate, batch.selection, batch.selection_checkpoint_id) == (0.2, "uncertain", reward.pk)
    defaults, _ = create(name="defaults")
    assert (defaults.gold_rate, defaults.selection, defaults.selection_checkpoint_id) == (0.05, "balanced", None)


def test_a_policy_cannot_select_pairs_and_a_retry_must_keep_the_selection():
    policy = make_checkpoint()
    with pytest.raises(InvalidInput, match=re.escape(svc.SELECTION_CHECKPOINT_NOT_REWARD)) as error:
        create(selection="uncertain", selection_checkpoint_id=policy.pk)
    assert error.value.field == "selection_checkpoint" and not Batch.objects.exists()
    checkpoints = [make_checkpoint(), make_checkpoint()]
    create(checkpoints=checkpoints, gold_rate=0.1)
    with pytest.raises(InvalidInput, match=re.escape(svc.NAME_TAKEN)):
        create(checkpoints=checkpoints, gold_rate=0.3)


def test_a_gold_comparison_is_never_held_out():
    batch, _ = create(held_out_fraction=0.5)
    checkpoint = batch.checkpoints.first()
    for i in range(20):
        make_comparison(batch)
        gold_comparison_create(
            batch=batch,
            prompt_text=f"Gold question {i}?",
            first=ResponseInput(checkpoint=checkpoint, text=f"right {i}", temperature=0.7),
            second=ResponseInput(checkpoint=checkpoint, text=f"wrong {i}", temperature=0.7),
            better="first",
            created_by=None,
        )
    svc.batch_open(batch=batch)
    held_out = Comparison.objects.filter(batch=batch, is_held_out=True)
    assert not held_out.filter(is_gold=True).exists()
    assert within_binomial_tolerance(held_out.count(), 20, 0.5)
