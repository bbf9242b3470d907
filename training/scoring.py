"""Llama 2's piecewise reward R_c over the helpfulness and safety reward models, for PPO and rejection sampling.

The reward models themselves are read by `sampler.engines.reward`. No Django here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from sampler.engines.reward import RewardScorer
from training.distributed import Runtime, contiguous_share, gather_objects
from training.ppo_math import choose_score


class Scorer(Protocol):
    """What policy training needs from reward models: R_c in [0, 1] per reply."""

    def probability(
        self, prompts: Sequence[list[dict[str, str]]], replies: Sequence[str], is_safety: Sequence[bool]
    ) -> list[float]: ...


class PiecewiseScorer:
    """Llama 2's R_c: the safety model's score on safety prompts or below 0.15, else the helpfulness model's.

    Without a safety model, the helpfulness score everywhere.
    """

    def __init__(
        self, helpfulness: str | Path, safety: str | Path | None, *, device: str = "cpu", max_length: int = 512
    ) -> None:
        self.helpfulness = RewardScorer(helpfulness, device=device, max_length=max_length)
        self.safety = RewardScorer(safety, device=device, max_length=max_length) if safety is not None else None

    def probability(
        self, prompts: Sequence[list[dict[str, str]]], replies: Sequence[str], is_safety: Sequence[bool]
    ) -> list[float]:
        helpful = torch.tensor(self.helpfulness.probability(prompts, replies))
        if self.safety is None:
            return helpful.tolist()
        safe = torch.tensor(self.safety.probability(prompts, replies))
        chosen: list[float] = choose_score(helpful, safe, torch.tensor(list(is_safety), dtype=torch.bool)).tolist()
        return chosen


class ShardedScorer:
    """A Scorer under torchrun: each process scores its contiguous block of the replies, and every process gets all
    the scores, in order."""

    def __init__(self, scorer: Scorer, runtime: Runtime) -> None:
        self.scorer, self.runtime = scorer, runtime

    def probability(
        self, prompts: Sequence[list[dict[str, str]]], replies: Sequence[str], is_safety: Sequence[bool]
    ) -> list[float]:
        block = contiguous_share(len(replies), self.runtime)
        mine = (
            self.scorer.probability(
                list(prompts[block.start : block.stop]),
                list(replies[block.start : block.stop]),
                list(is_safety[block.start : block.stop]),
            )
            if len(block)
            else []
        )
        return [score for part in gather_objects(mine, self.runtime) for score in part]


def sharded_scorer(scorer: Scorer, runtime: Runtime) -> Scorer:
    """`scorer` itself in one process, a ShardedScorer around it under torchrun."""
    return ShardedScorer(scorer, runtime) if runtime.distributed else scorer
