"""The loss and schedule against hand-computed values."""

import math

import pytest
import torch

from training.reward_model import ranking_loss
from training.schedule import cosine_with_warmup, warmup_steps


def test_ranking_loss_with_margin_matches_hand_computation():
    chosen = torch.tensor([2.0, 0.5])
    rejected = torch.tensor([1.0, 1.0])
    margin = torch.tensor([1.0, 0.0])
    # -log(sigmoid(2 - 1 - 1)) = log 2; -log(sigmoid(0.5 - 1 - 0)) = log(1 + e^0.5)
    expected = (math.log(2) + math.log(1 + math.exp(0.5))) / 2
    assert ranking_loss(chosen, rejected, margin).item() == pytest.approx(expected, rel=1e-6)


def test_a_larger_margin_asks_for_a_larger_gap():
    chosen, rejected = torch.tensor([1.0]), torch.tensor([0.0])
    losses = [ranking_loss(chosen, rejected, torch.tensor([m])).item() for m in (0.0, 1 / 3, 2 / 3, 1.0)]
    assert losses == sorted(losses) and losses[-1] == pytest.approx(math.log(2))


@pytest.mark.parametrize(("total", "expected"), [(3, 2), (100, 5), (1000, 30), (10_000, 300)])
def test_warmup_is_three_percent_at_least_five(total, expected):
    assert warmup_steps(total) == expected


def test_cosine_decays_from_peak_to_ten_percent():
    total, warmup = 100, 5
    assert cosine_with_warmup(0, total_steps=total, warmup=warmup) == pytest.approx(1 / 5)
    assert cosine_with_warmup(4, total_steps=total, warmup=warmup) == pytest.approx(1.0)
    assert cosine_with_warmup(5, total_steps=total, warmup=warmup) == pytest.approx(1.0)
    assert cosine_with_warmup(100, total_steps=total, warmup=warmup) == pytest.approx(0.1)
    middle = cosine_with_warmup(52, total_steps=total, warmup=warmup)
    assert 0.5 < middle < 0.6
