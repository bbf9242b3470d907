"""The Bradley-Terry fit: known strengths come back in order, and their intervals cover the truth."""

import math
import random

import pytest

from loop.bradley_terry import ELO_CENTRE, ELO_SCALE, bradley_terry


def _simulate(strengths: dict[str, float], games_per_pair: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    names = sorted(strengths)
    votes = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            p_first = 1 / (1 + math.exp(strengths[second] - strengths[first]))
            for _ in range(games_per_pair):
                votes.append((first, second) if rng.random() < p_first else (second, first))
    return votes


def test_recovers_the_order_of_known_strengths():
    strengths = {"a": -1.0, "b": 0.0, "c": 0.7, "d": 1.5}
    ratings = bradley_terry(_simulate(strengths, games_per_pair=300, seed=1))
    assert [r.name for r in ratings] == ["d", "c", "b", "a"]
    assert all(r.low < r.score < r.high for r in ratings)


def test_intervals_contain_the_true_strengths():
    strengths = {"a": -1.0, "b": -0.2, "c": 0.4, "d": 0.8}
    mean = sum(strengths.values()) / len(strengths)
    truth = {name: ELO_CENTRE + ELO_SCALE * (value - mean) for name, value in strengths.items()}
    covered = total = 0
    for seed in range(40):
        for rating in bradley_terry(_simulate(strengths, games_per_pair=80, seed=seed)):
            covered += rating.low <= truth[rating.name] <= rating.high
            total += 1
    # Nominal 95%: over 160 intervals, well above 85% cover the truth; a broken interval covers far fewer.
    assert covered / total > 0.85


def test_counts_wins_and_games_and_keeps_the_unbeaten_finite():
    ratings = {r.name: r for r in bradley_terry([("new", "old")] * 5, players=["unused"])}
    assert (ratings["new"].wins, ratings["new"].games) == (5, 5)
    assert (ratings["old"].wins, ratings["old"].games) == (0, 5)
    assert math.isfinite(ratings["new"].score) and ratings["new"].score > ratings["old"].score
    assert ratings["unused"].games == 0
    assert ratings["unused"].score == pytest.approx(
        ELO_CENTRE - (ratings["new"].score + ratings["old"].score - 2 * ELO_CENTRE), abs=1e-6
    )


def test_no_votes_no_ratings():
    assert bradley_terry([]) == []
