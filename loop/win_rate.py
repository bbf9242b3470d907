"""Win rates with Wilson score intervals (better than the normal approximation for small counts or rates near 0, 1)."""

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054


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
    rate = wins / games
    denominator = 1 + z * z / games
    centre = (rate + z * z / (2 * games)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / games + z * z / (4 * games * games)) / denominator
    return WinRate(wins=wins, games=games, rate=rate, low=max(0.0, centre - half), high=min(1.0, centre + half))
