"""The sizes the check runs at: realistic ones on a GPU, tiny ones for the dry run on CPU (seconds, in CI)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    model: str
    """`bench.gpu.models.SHAPES` key of the model every section uses."""
    large_model: str
    """The model of the last sampling section, run if the budget still allows it."""
    batch_sizes: tuple[int, ...]
    max_new_tokens: int
    """Per completion (sampling, live pairs, PPO rollouts); random weights almost never emit EOS, so each runs to it."""
    prompt_tokens: int
    pair_repeats: int
    reward_pairs: int
    reward_batch_size: int
    reward_micro_batch_size: int
    reward_max_length: int
    """Every sequence is cut to exactly this many tokens, so no step computes on padding."""
    ppo_iterations: int
    """The first is a warm-up, left out of the time split."""
    ppo_rollout_batch_size: int
    ppo_minibatch_size: int
    ppo_micro_batch_size: int
    vllm_requests: int
    min_seconds: dict[str, float] = field(default_factory=dict)
    """Budget a section needs left to start (model building included); a section not named needs none."""


GPU = Profile(
    model="llama-1.1b",
    large_model="llama-7b",
    batch_sizes=(1, 8, 32, 128),
    max_new_tokens=128,
    prompt_tokens=64,
    pair_repeats=10,
    reward_pairs=512,
    reward_batch_size=32,
    reward_micro_batch_size=8,
    reward_max_length=512,
    ppo_iterations=3,
    ppo_rollout_batch_size=64,
    ppo_minibatch_size=32,
    ppo_micro_batch_size=16,
    vllm_requests=256,
    min_seconds={
        "sampling": 40,
        "live_pair": 20,
        "reward_mfu": 60,
        "ppo": 90,
        "vllm": 120,
        "sampling_large": 90,
    },
)

DRY = Profile(
    model="tiny",
    large_model="tiny-wide",
    batch_sizes=(1, 4),
    max_new_tokens=8,
    prompt_tokens=8,
    pair_repeats=3,
    reward_pairs=24,
    reward_batch_size=8,
    reward_micro_batch_size=4,
    reward_max_length=32,
    ppo_iterations=2,
    ppo_rollout_batch_size=8,
    ppo_minibatch_size=4,
    ppo_micro_batch_size=4,
    vllm_requests=8,
)
