"""Scoring (dialogue, reply) pairs with a trained reward model, in batches: for PPO, rejection sampling
and pair selection. No Django here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from training.data import encode_text
from training.evaluate import score_sequences
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
