"""Scoring (dialogue, reply) pairs with a trained reward model, in batches: for PPO, rejection sampling
and pair selection; and Llama 2's piecewise reward R_c over the helpfulness and safety models. No Django here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from training.data import encode_text
from training.evaluate import score_sequences
from training.ppo_math import choose_score
from training.reward_model import load_reward_model


class RewardScorer:
    """A loaded reward model. `score` gives raw rewards; `probability` their sigmoid, which Llama 2's PPO uses."""

    def __init__(
        self, directory: str | Path, *, device: str = "cpu", max_length: int = 512, batch_size: int = 16
    ) -> None:
        self.model, self.tokenizer = load_reward_model(directory, device=device)
        self.max_length = max_length
        self.batch_size = batch_size

    def score(self, prompts: Sequence[list[dict[str, str]]], replies: Sequence[str]) -> list[float]:
        sequences = [
            encode_text(self.tokenizer, prompt, reply, self.max_length)
            for prompt, reply in zip(prompts, replies, strict=True)
        ]
        return score_sequences(self.model, sequences, self.tokenizer.pad_token_id or 0, self.batch_size).tolist()

    def probability(self, prompts: Sequence[list[dict[str, str]]], replies: Sequence[str]) -> list[float]:
        return [1 / (1 + math.exp(-value)) for value in self.score(prompts, replies)]


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
