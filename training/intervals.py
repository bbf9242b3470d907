"""The Wilson score interval of a binomial proportion: one definition for every floor that reports one.

Training reports reward-model accuracy with it, the loop the human win rate, the dashboards agreement and gold
accuracy. Better than the normal approximation for small counts and for rates near 0 or 1. Plain math: no Django,
no torch, so any package at or above `training` may import it.
"""

from __future__ import annotations

import math

Z_95 = 1.959963984540054
"""The two-sided 95% quantile of the standard normal."""


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """(low, high) of the share successes / trials, 95% by default; (0, 1) when there are no trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(centre - half, 0.0), min(centre + half, 1.0)
