"""Learning-rate schedule of Llama 2's reward models: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math


def warmup_steps(total_steps: int, *, ratio: float = 0.03, minimum: int = 5) -> int:
    """3% of the steps, at least 5, and never all of them."""
    return max(0, min(max(minimum, math.ceil(ratio * total_steps)), total_steps - 1))


def cosine_with_warmup(step: int, *, total_steps: int, warmup: int, floor: float = 0.1) -> float:
    """The LR multiplier at `step` (0-based): warm-up from 1/warmup to 1, then cosine from 1 to `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    decay_steps = max(total_steps - warmup, 1)
    progress = min((step - warmup) / decay_steps, 1.0)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
