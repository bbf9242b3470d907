"""Small pure statistics for the dashboards: agreement, Krippendorff's alpha, binomial tests, histograms.

No Django here: plain numbers in, plain numbers out, so each figure is unit-tested on hand-computed cases.
"""

import math
from collections.abc import Hashable, Sequence
from itertools import combinations

from loop.evaluation.statistics import krippendorff_alpha
from training.intervals import wilson_interval as wilson_interval  # one definition, re-exported for the dashboards


def krippendorff_alpha_interval(units: Sequence[Sequence[float]]) -> float | None:
    """Krippendorff's alpha with the interval metric (squared difference): `units` holds, per unit (a comparison),
    the values its coders gave. The one definition is `loop.evaluation.statistics.krippendorff_alpha`; None when
    undefined (no unit with two values, or no variation at all)."""
    return krippendorff_alpha(units, "interval")


def pairwise_agreement(units: Sequence[Sequence[Hashable]]) -> tuple[int, int]:
    """(agreeing pairs, pairs): every unordered pair of coders within a unit, over units with two or more."""
    agree = pairs = 0
    for unit in units:
        for left, right in combinations(unit, 2):
            pairs += 1
            agree += left == right
    return agree, pairs


def binomial_two_sided_p(successes: int, trials: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test: the probability of an outcome no more likely than the one observed."""
    if trials == 0:
        return 1.0

    def log_pmf(k: int) -> float:
        log_choose = math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
        return log_choose + k * math.log(p) + (trials - k) * math.log1p(-p)

    observed = log_pmf(successes)
    # The relative tolerance keeps outcomes equally likely to the observed one (ties by symmetry) in the tail.
    total = math.fsum(math.exp(log_pmf(k)) for k in range(trials + 1) if log_pmf(k) <= observed + 1e-9)
    return min(total, 1.0)


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return float(ordered[middle]) if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def histogram(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """Counts per bin [edges[i], edges[i+1]); the last bin also takes everything at or above its left edge."""
    counts = [0] * (len(edges) - 1)
    for value in values:
        for i in range(len(counts) - 1, -1, -1):
            if value >= edges[i]:
                counts[i] += 1
                break
    return counts
