"""Tiny policies, reward models, prompt files and synthetic scorers for the policy-training tests."""

import json
from collections.abc import Sequence
from pathlib import Path

from sampler.engines.tiny import build_tiny_checkpoint
from training.reward_model import load_backbone, save_reward_model


def write_prompts(path: Path, *, train: int = 24, test: int = 8) -> Path:
    """A prompts file: every fifth prompt tagged safety; the last `test` ones held out."""
    with path.open("w") as handle:
        for i in range(train + test):
            row = {
                "prompt": [{"role": "user", "content": f"Question {i}: what is a good answer?"}],
                "is_safety": i % 5 == 0,
                "split": "train" if i < train else "test",
            }
            handle.write(json.dumps(row) + "\n")
    return path


def build_reward_model(backbone: Path, target: Path) -> Path:
    """A reward-model directory (fresh head) on a tiny backbone, as the reward trainer writes one."""
    model, tokenizer = load_backbone(backbone)
    save_reward_model(model, tokenizer, target, mean=0.0, std=1.0)
    return target


def build_policy(target: Path, *, eos_boost: float = 3.0) -> Path:
    """A tiny policy whose responses end after a few tokens most of the time."""
    return build_tiny_checkpoint(target, seed=0, eos_boost=eos_boost)


class ShortReplyScorer:
    """A learnable synthetic R_c: shorter replies score higher (1 for an empty one)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def probability(
        self, prompts: Sequence[list[dict[str, str]]], replies: Sequence[str], is_safety: Sequence[bool]
    ) -> list[float]:
        self.calls.append((len(replies), sum(is_safety)))
        return [1 / (1 + len(reply) / 8) for reply in replies]
