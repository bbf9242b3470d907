"""The reward trainer end to end on tiny models: learning, resuming, saving, and data-parallel runs."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from training.data import SCHEMA_MISMATCH, read_manifest
from training.reward_trainer import RewardTrainingConfig, train_reward_model
from training.tests.synthetic import write_export

ROOT = Path(__file__).resolve().parents[2]


def config(export: Path, backbone: Path, output: Path, **overrides: Any) -> RewardTrainingConfig:
    values: dict[str, Any] = dict(
        export_dir=export,
        backbone=backbone,
        output_dir=output,
        learning_rate=3e-3,
        batch_size=16,
        micro_batch_size=8,
        max_length=64,
        epochs=4,
        checkpoint_every=5,
        device="cpu",
    )
    values.update(overrides)
    return RewardTrainingConfig(**values)


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def test_a_tiny_model_learns_a_learnable_preference(tiny_backbone, synthetic_export, tmp_path):
    output = tmp_path / "rm"
    metrics = train_reward_model(config(synthetic_export, tiny_backbone, output))
    assert metrics["eval"]["accuracy"] > 90
    assert metrics["warmup_steps"] == 5 and metrics["total_steps"] == 64
    # A plain Hugging Face directory with the score statistics recorded.
    model = AutoModelForSequenceClassification.from_pretrained(output)
    assert model.config.num_labels == 1 and isinstance(model.config.reward_std, float)
    assert json.loads((output / "reward_stats.json").read_text())["std"] > 0
    for name in ("accuracy_by_strength.png", "calibration.png", "loss.png", "report.md", "metrics.json"):
        assert (output / name).exists(), name
    assert "Llama 2 helpfulness RM (paper, Table 8) | 80.7" in (output / "report.md").read_text()
    assert not output.with_name("rm.work").exists()


def test_a_resumed_run_ends_where_an_unbroken_one_does(tiny_backbone, synthetic_export, tmp_path):
    unbroken = tmp_path / "unbroken"
    train_reward_model(config(synthetic_export, tiny_backbone, unbroken, epochs=1))
    resumed = tmp_path / "resumed"
    stopped = train_reward_model(config(synthetic_export, tiny_backbone, resumed, epochs=1, stop_after_steps=7))
    assert stopped == {"stopped_at_step": 7, "total_steps": 16}
    assert not resumed.exists(), "a stopped run must not leave a model behind"
    train_reward_model(config(synthetic_export, tiny_backbone, resumed, epochs=1))
    a, b = weights(unbroken), weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_a_manifest_of_another_schema_version_is_refused(tmp_path, tiny_backbone):
    export = write_export(tmp_path / "old", train=4, test=0, schema_version=99)
    with pytest.raises(ValueError, match="schema version 99"):
        read_manifest(export)
    assert "re-export" in SCHEMA_MISMATCH


@pytest.mark.parametrize("sharding", [[], ["--fsdp"]], ids=["ddp", "fsdp"])
def test_two_gloo_processes_match_one_process_on_the_same_global_batch(tiny_backbone, tmp_path, sharding):
    export = write_export(tmp_path / "export", train=64, test=16)
    arguments = [
        "--export", str(export), "--backbone", str(tiny_backbone), "--learning-rate", "3e-3",
        "--batch-size", "8", "--micro-batch-size", "2", "--max-length", "64", "--device", "cpu",
    ]  # fmt: skip
    single = tmp_path / "single"
    subprocess.run([sys.executable, "-m", "training.reward_cli", *arguments, "--output", str(single)],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    double = tmp_path / "double"
    port = "29533" if not sharding else "29534"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    result = subprocess.run([*torchrun, "-m", "training.reward_cli", *arguments, *sharding, "--output", str(double)],
                            cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = weights(single), weights(double)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=1e-4, msg=name)
    one = json.loads((single / "metrics.json").read_text())["log"]
    two = json.loads((double / "metrics.json").read_text())["log"]
    assert [round(e["train/loss"], 4) for e in one] == [round(e["train/loss"], 4) for e in two]


def test_the_scorer_ranks_replies_like_the_trained_model(tiny_backbone, synthetic_export, tmp_path):
    from sampler.engines.reward import RewardScorer

    output = tmp_path / "rm"
    train_reward_model(config(synthetic_export, tiny_backbone, output))
    scorer = RewardScorer(output)
    prompt = [{"role": "user", "content": "Question 3: what is good?"}]
    good, bad = scorer.score([prompt, prompt], ["a helpful honest answer", "dog dog dog"])
    assert good > bad
    assert 0 < scorer.probability([prompt], ["a helpful honest answer"])[0] < 1
    # Batching does not change a score.
    assert scorer.score([prompt], ["dog dog dog"])[0] == pytest.approx(bad, abs=1e-5)


def test_the_smollm2_policy_works_as_a_backbone(tmp_path):
    """Llama 2 initialises its reward models from the chat model: the decoder path, at real size."""
    from sampler.engines.smollm2 import prepare_smollm2_checkpoint

    policy = prepare_smollm2_checkpoint(ROOT / "var" / "test-models" / "smollm2-135m-instruct")
    export = write_export(tmp_path / "export", train=8, test=4)
    metrics = train_reward_model(
        config(export, policy, tmp_path / "rm", batch_size=4, micro_batch_size=2, epochs=1, learning_rate=1e-5)
    )
    assert metrics["total_steps"] == 2 and metrics["eval"]["pairs"] == 4
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.pad_token_id != model.config.eos_token_id
