"""Bradley-Terry ratings from pairwise votes: P(i beats j) = p_i / (p_i + p_j).

Fitted by Hunter's MM iterations (Hunter 2004, "MM algorithms for generalized Bradley-Terry models"),
with a small prior that keeps undefeated or unbeaten players finite: every player is credited with
`prior_games` virtual games against a reference player of average strength, half won and half lost.
Confidence intervals come from the Fisher information of the (penalised) likelihood. Scores are on
the Elo scale: 1000 is the players' geometric-mean strength, and 400 points are 10:1 odds.

Plain Python and numpy, no Django: the leaderboards of the loop and of the models dashboard share it.
"""

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from training.intervals import Z_95

ELO_SCALE = 400 / math.log(10)
ELO_CENTRE = 1000.0


@dataclass(frozen=True)
class Rating:
    """One player's fitted rating: `score` with its 95% interval [`low`, `high`], on the Elo scale."""

    name: str
    score: float
    low: float
    high: float
    wins: int
    games: int


def _fit_strengths(
    wins: np.ndarray, games: np.ndarray, prior_games: float, tolerance: float, max_iterations: int
) -> np.ndarray:
    """Log-strengths by MM iterations; `wins[i, j]` counts i's wins over j, `games` is wins + wins.T.

    The prior's reference player (strength 1) fixes the scale, so no renormalisation is needed.
    """
    strength = np.ones(len(wins))
    won = wins.sum(axis=1) + prior_games / 2
    for _ in range(max_iterations):
        pair_sums = strength[:, None] + strength[None, :]
        denominator = (games / pair_sums).sum(axis=1) + prior_games / (strength + 1.0)
        updated = won / denominator
        done = np.max(np.abs(np.log(updated) - np.log(strength))) < tolerance
        strength = updated
        if done:
            break
    return np.log(strength)


def _standard_errors(theta: np.ndarray, games: np.ndarray, prior_games: float) -> np.ndarray:
    """Standard errors of the centred log-strengths, from the inverse Fisher information at `theta`."""
    n = len(theta)
    p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
    information = -games * p * (1 - p)
    np.fill_diagonal(information, 0.0)
    reference = 1.0 / (1.0 + np.exp(-theta))
    np.fill_diagonal(information, -information.sum(axis=1) + prior_games * reference * (1 - reference))
    covariance = np.linalg.inv(information)
    centre = np.eye(n) - np.full((n, n), 1.0 / n)
    centred = centre @ covariance @ centre.T
    return np.sqrt(np.clip(np.diag(centred), 0.0, None))


def bradley_terry(
    votes: Sequence[tuple[str, str]],
    *,
    players: Iterable[str] = (),
    prior_games: float = 1.0,
    tolerance: float = 1e-10,
    max_iterations: int = 10_000,
) -> list[Rating]:
    """Ratings of every player in `votes` (each a (winner, loser) pair) and in `players`, best first.

    A player in `players` without votes gets the prior's rating (1000) with a wide interval.
    """
    names = sorted({name for vote in votes for name in vote} | set(players))
    if not names:
        return []
    index = {name: i for i, name in enumerate(names)}
    wins = np.zeros((len(names), len(names)))
    for (winner, loser), count in Counter(votes).items():
        if winner != loser:
            wins[index[winner], index[loser]] += count
    games = wins + wins.T
    theta = _fit_strengths(wins, games, prior_games, tolerance, max_iterations)
    errors = _standard_errors(theta, games, prior_games)
    theta = theta - theta.mean()
    ratings = [
        Rating(
            name=name,
            score=float(ELO_CENTRE + ELO_SCALE * theta[i]),
            low=float(ELO_CENTRE + ELO_SCALE * (theta[i] - Z_95 * errors[i])),
            high=float(ELO_CENTRE + ELO_SCALE * (theta[i] + Z_95 * errors[i])),
            wins=int(wins[i].sum()),
            games=int(games[i].sum()),
        )
        for i, name in enumerate(names)
    ]
    return sorted(ratings, key=lambda rating: (-rating.score, rating.name))
