"""Win rates with Wilson score intervals (better than the normal approximation for small counts or rates near 0, 1).

The interval itself is `training.intervals.wilson_interval`, the one definition the reward-model evaluation and the
dashboards use as well.
"""

from dataclasses import dataclass

from training.intervals import Z_95, wilson_interval


@dataclass(frozen=True)
class WinRate:
    wins: int
    games: int
    rate: float | None
    low: float | None
    high: float | None


def wilson(wins: int, games: int, z: float = Z_95) -> WinRate:
    """The share of games won with its Wilson score interval (None throughout when there are no games)."""
    if games == 0:
        return WinRate(wins=0, games=0, rate=None, low=None, high=None)
    low, high = wilson_interval(wins, games, z)
    return WinRate(wins=wins, games=games, rate=wins / games, low=low, high=high)
