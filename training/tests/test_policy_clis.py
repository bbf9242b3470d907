"""The PPO, rejection-sampling and temperature-scan CLIs at toy size, scoring with real tiny reward models."""

import json
from pathlib import Path

import pytest
import torch

from sampler.engines.reward import RewardScorer
from training import ppo_cli, rejection_cli, scan_cli
from training.ppo_math import choose_score
from training.scoring import PiecewiseScorer
from training.tests.policy_setup import build_policy, build_reward_model, write_prompts


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("clis")
    policy = build_policy(root / "policy")
    return {
        "root": str(root),
        "policy": str(policy),
        "helpfulness": str(build_reward_model(policy, root / "helpfulness")),
        "safety": str(build_reward_model(build_policy(root / "safety-base", eos_boost=1.0), root / "safety")),
        "prompts": str(write_prompts(root / "prompts.jsonl", train=8, test=4)),
    }


def test_the_piecewise_scorer_takes_the_safety_score_where_llama_2_does(files):
    prompts = [[{"role": "user", "content": "Hi"}]] * 4
    replies = ["Hello!", "The capital of France is Paris.", "dog dog", ""]
    is_safety = [True, False, False, True]
    scores = PiecewiseScorer(files["helpfulness"], files["safety"]).probability(prompts, replies, is_safety)
    helpful = torch.tensor(RewardScorer(files["helpfulness"]).probability(prompts, replies))
    safe = torch.tensor(RewardScorer(files["safety"]).probability(prompts, replies))
    assert scores == pytest.approx(choose_score(helpful, safe, torch.tensor(is_safety)).tolist())
    assert scores[0] == pytest.approx(float(safe[0])) and not torch.allclose(helpful, safe)
    alone = PiecewiseScorer(files["helpfulness"], None).probability(prompts, replies, is_safety)
    assert alone == pytest.approx(helpful.tolist())


def test_the_three_clis_run_end_to_end(files, capsys):
    common = [
        "--reward-helpfulness",
        files["helpfulness"],
        "--reward-safety",
        files["safety"],
        "--prompts",
        files["prompts"],
        "--device",
        "cpu",
        "--max-new-tokens",
        "6",
    ]
    rejection = f"{files['root']}/rs"
    metrics = rejection_cli.main(
        ["--policy", files["policy"], "--output", rejection, "--samples-per-prompt", "2", "--batch-size", "4", *common]
    )
    assert metrics["prompts"] == 8 and metrics["mean_best_score"] >= metrics["mean_sample_score"]
    ppo = f"{files['root']}/ppo"
    metrics = ppo_cli.main(
        [
            "--policy",
            rejection,
            "--output",
            ppo,
            "--iterations",
            "2",
            "--rollout-batch-size",
            "4",
            "--minibatch-size",
            "2",
            "--eval-every",
            "1",
            *common,
        ]
    )
    assert metrics["iterations_run"] == 2 and metrics["value_init"] == "reward_model"
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["heldout_reward_before"] == metrics["heldout_reward_before"]
    scan = f"{files['root']}/scan"
    result = scan_cli.main(
        ["--policy", ppo, "--output", scan, "--temperatures", "0.7,1.3", "--max-samples", "3", *common]
    )
    assert result["prompts"] == 4 and json.loads(Path(scan, "scan.json").read_text())["max_samples"] == 3
    assert Path(scan, "temperature_scan.png").read_bytes()[:4] == b"\x89PNG"
