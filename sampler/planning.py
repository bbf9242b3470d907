"""Pair planning: which two model variants answer each prompt (Llama 2, section 3.2.1).

The two responses to a prompt come from different checkpoints when the plan has two or more
(temperatures varied as well), otherwise from the same checkpoint at two different temperatures.
Pairs are dealt round-robin over every combination, so each checkpoint pair (or temperature pair)
gets an equal share of the batch. No Django here: plain values in, plain values out.
"""

import hashlib
from dataclasses import dataclass
from itertools import combinations

PLAN_NEEDS_VARIETY = "a pair plan needs two or more checkpoints, or one checkpoint and two or more temperatures"


@dataclass(frozen=True)
class Variant:
    """One side of a pair: which checkpoint, at which temperature."""

    checkpoint_id: int
    temperature: float


def plan_pairs(count: int, checkpoint_ids: list[int], temperatures: list[float]) -> list[tuple[Variant, Variant]]:
    """Plan `count` pairs whose two sides always differ, balanced across the plan."""
    checkpoints = sorted(set(checkpoint_ids))
    grid = sorted(set(temperatures))
    if not grid or not checkpoints or (len(checkpoints) < 2 and len(grid) < 2):
        raise ValueError(PLAN_NEEDS_VARIETY)
    pairs: list[tuple[Variant, Variant]] = []
    if len(checkpoints) >= 2:
        checkpoint_pairs = list(combinations(checkpoints, 2))
        for k in range(count):
            first, second = checkpoint_pairs[k % len(checkpoint_pairs)]
            # Walk the temperature grid on each side, offset so the sides differ when the grid allows.
            round_ = k // len(checkpoint_pairs)
            pairs.append(
                (
                    Variant(first, grid[round_ % len(grid)]),
                    Variant(second, grid[(round_ + 1) % len(grid)]),
                )
            )
    else:
        (only,) = checkpoints
        temperature_pairs = list(combinations(grid, 2))
        for k in range(count):
            low, high = temperature_pairs[k % len(temperature_pairs)]
            pairs.append((Variant(only, low), Variant(only, high)))
    return pairs


def response_seed(*parts: object) -> int:
    """A stable 63-bit seed from identifying parts (batch, prompt, side, attempt): reruns draw the same."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# Uncertainty selection draws this many candidate pairs for each pair it keeps.
OVERSAMPLE = 2


def most_uncertain(differences: list[float], keep: int) -> list[int]:
    """Indices of the `keep` candidates whose reward difference |r_a - r_b| is smallest, in candidate order.

    The pairs a reward model is least sure about teach it the most (active preference learning).
    """
    ranked = sorted(range(len(differences)), key=lambda i: (abs(differences[i]), i))
    return sorted(ranked[: max(keep, 0)])
