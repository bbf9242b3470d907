"""Pair planning: which two model variants answer each prompt (Llama 2, section 3.2.1).

A batch has one design: with two or more checkpoints, every checkpoint pair at every (first, second)
temperature pair, the same temperature on both sides included, so that a checkpoint's win can be read
apart from a temperature's; with one checkpoint, every pair of two different temperatures. Pairs are dealt
from the combinations the batch has used least so far, so pre-sampling chunks, live pairs and continued
dialogues together keep every combination within one of equal, and so each checkpoint at each
temperature. No Django here: plain values in, plain values out.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations, product

PLAN_NEEDS_VARIETY = "a pair plan needs two or more checkpoints, or one checkpoint and two or more temperatures"


@dataclass(frozen=True)
class Variant:
    """One side of a pair: which checkpoint, at which temperature."""

    checkpoint_id: int
    temperature: float


Pair = tuple[Variant, Variant]


def batch_design(checkpoint_ids: list[int], temperatures: list[float]) -> list[Pair]:
    """Every combination a batch's pairs are dealt from, in a fixed order (sides in storage order)."""
    checkpoints = sorted(set(checkpoint_ids))
    grid = sorted(set(temperatures))
    if not grid or not checkpoints or (len(checkpoints) < 2 and len(grid) < 2):
        raise ValueError(PLAN_NEEDS_VARIETY)
    if len(checkpoints) >= 2:
        return [
            (Variant(first, first_temperature), Variant(second, second_temperature))
            for first, second in combinations(checkpoints, 2)
            for first_temperature, second_temperature in product(grid, grid)
        ]
    (only,) = checkpoints
    return [(Variant(only, low), Variant(only, high)) for low, high in combinations(grid, 2)]


def plan_pairs(
    count: int,
    checkpoint_ids: list[int],
    temperatures: list[float],
    *,
    used: Mapping[Pair, int] | None = None,
    start: int = 0,
) -> list[Pair]:
    """`count` pairs from the least-used combinations of the batch's design, given how often the batch has
    used each (`used`); ties go in design order from `start`, so that chunks sampled at the same moment
    from the same counts spread over different combinations."""
    design = batch_design(checkpoint_ids, temperatures)
    start %= len(design)
    order = design[start:] + design[:start]
    uses = [(used or {}).get(pair, 0) for pair in order]
    plan = []
    for _ in range(count):
        least = min(range(len(order)), key=uses.__getitem__)
        plan.append(order[least])
        uses[least] += 1
    return plan


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
