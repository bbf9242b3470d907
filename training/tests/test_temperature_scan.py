"""The temperature scan (Llama 2, Figure 8) on a tiny policy."""

from itertools import pairwise

import pytest

from training.rollout import load_prompts
from training.temperature_scan import plot_temperature_scan, temperature_scan
from training.tests.policy_setup import ShortReplyScorer, build_policy, write_prompts


def test_max_reward_of_n_samples_never_falls_with_n_and_is_drawn(tmp_path):
    policy = build_policy(tmp_path / "policy")
    rows = load_prompts(write_prompts(tmp_path / "prompts.jsonl", train=3, test=0))
    prompts = [{"prompt": row.prompt, "is_safety": row.is_safety} for row in rows]
    result = temperature_scan(policy, ShortReplyScorer(), prompts, [0.5, 1.5], 6, max_new_tokens=10, device="cpu")
    assert set(result["max_reward_by_n"]) == {"0.5", "1.5"}
    for temperature, curve in result["max_reward_by_n"].items():
        assert len(curve) == 6
        assert all(later >= earlier for earlier, later in pairwise(curve)), temperature
        assert curve[0] <= result["mean_reward"][temperature] + 0.3
        assert curve[-1] > curve[0], "more samples found a better one"
    assert result["best_temperature"] in (0.5, 1.5)
    png = plot_temperature_scan(result, tmp_path / "scan.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_scan_without_prompts_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least one prompt"):
        temperature_scan(tmp_path, ShortReplyScorer(), [], [1.0], 4)
