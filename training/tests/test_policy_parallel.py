"""PPO and rejection-sampling fine-tuning under torchrun: two gloo CPU processes end where one process does.

Each test runs the CLI once in this process and once as two processes (`torch.distributed.run --standalone`, a
free local port), on the same global batches and generation calls (`--generation-batch-size`), and compares the
final weights, the logs and what was sampled. DDP and FSDP2 (`--fsdp`) both; models tiny, steps few.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training import ppo_cli, rejection_cli
from training.tests.policy_setup import build_policy, build_reward_model, write_prompts

ROOT = Path(__file__).resolve().parents[2]
SHARDING = pytest.mark.parametrize("sharding", [[], ["--fsdp"]], ids=["ddp", "fsdp"])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parallel")
    policy = build_policy(root / "policy")
    return {
        "root": root,
        "policy": policy,
        "reward": build_reward_model(policy, root / "reward"),
        "prompts": write_prompts(root / "prompts.jsonl", train=8, test=4),
    }


def common(files: dict[str, Path]) -> list[str]:
    return [
        "--policy", str(files["policy"]), "--reward-helpfulness", str(files["reward"]),
        "--prompts", str(files["prompts"]), "--device", "cpu", "--max-new-tokens", "8",
        "--learning-rate", "1e-2", "--micro-batch-size", "2", "--generation-batch-size", "4",
    ]  # fmt: skip


PPO = ["--iterations", "2", "--rollout-batch-size", "8", "--minibatch-size", "4", "--eval-every", "1",
       "--eval-prompts", "4"]  # fmt: skip
RS = ["--samples-per-prompt", "2", "--batch-size", "5", "--epochs", "2", "--max-length", "64"]
"""Steps of 5 and 3 examples: the second process's share is one micro-batch short, and keeps in step."""


def two_processes(module: str, arguments: list[str]) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run([*torchrun, "-m", module, *arguments], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]


def assert_same_weights(one: Path, two: Path) -> None:
    a, b = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=1e-4, msg=name)


def metrics(directory: Path) -> dict:
    return json.loads((directory / "metrics.json").read_text())


@pytest.fixture(scope="module")
def one_process_ppo(files) -> Path:
    output = files["root"] / "ppo-one"
    ppo_cli.main([*common(files), *PPO, "--output", str(output)])
    return output


@pytest.fixture(scope="module")
def one_process_rs(files) -> Path:
    output = files["root"] / "rs-one"
    rejection_cli.main([*common(files), *RS, "--output", str(output)])
    return output


@SHARDING
def test_ppo_on_two_gloo_processes_matches_one_process(files, one_process_ppo, sharding):
    two = files["root"] / f"ppo-two{'-'.join(sharding)}"
    two_processes("training.ppo_cli", [*common(files), *PPO, *sharding, "--output", str(two)])
    assert_same_weights(one_process_ppo, two)
    single, double = metrics(one_process_ppo), metrics(two)
    assert (single["processes"], double["processes"]) == (1, 2)
    for key in ("rollout/response_length", "rollout/eos_rate", "rollout/score", "ppo/kl", "eval/heldout_reward"):
        assert [round(e[key], 4) for e in single["log"]] == [round(e[key], 4) for e in double["log"]], key
    assert double["heldout_reward_before"] == pytest.approx(single["heldout_reward_before"], abs=1e-5)


@SHARDING
def test_rejection_sampling_on_two_gloo_processes_matches_one_process(files, one_process_rs, sharding):
    two = files["root"] / f"rs-two{'-'.join(sharding)}"
    two_processes("training.rejection_cli", [*common(files), *RS, *sharding, "--output", str(two)])
    kept = [[json.loads(line) for line in (run / "best_samples.jsonl").read_text().splitlines()]
            for run in (one_process_rs, two)]  # fmt: skip
    assert [row["reply"] for row in kept[0]] == [row["reply"] for row in kept[1]], "the same samples were drawn"
    assert [row["score"] for row in kept[0]] == pytest.approx([row["score"] for row in kept[1]], abs=1e-5)
    assert_same_weights(one_process_rs, two)
    losses = [[round(entry["sft/loss"], 4) for entry in metrics(run)["log"]] for run in (one_process_rs, two)]
    assert losses[0] == losses[1] and len(losses[0]) == 4
