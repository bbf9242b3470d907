"""Rejection sampling on tiny models: best of K kept, loss on response tokens only, resumable, a PPO start."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from training.policy import load_policy
from training.ppo import PPOConfig, train_ppo
from training.rejection_sampling import (
    IGNORE_INDEX,
    RejectionSamplingConfig,
    best_of,
    sample_best,
    sft_batch,
    train_rejection_sampling,
)
from training.rollout import load_prompts
from training.tests.policy_setup import ShortReplyScorer, build_policy, build_reward_model, write_prompts


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rejection")
    policy = build_policy(root / "policy")
    return {
        "root": root,
        "policy": policy,
        "reward": build_reward_model(policy, root / "reward"),
        "prompts": write_prompts(root / "prompts.jsonl", train=12, test=4),
    }


def config(setup: dict[str, Path], output: Path, **overrides: Any) -> RejectionSamplingConfig:
    values: dict[str, Any] = dict(
        policy=setup["policy"],
        reward_helpfulness=setup["reward"],
        reward_safety=None,
        prompts=setup["prompts"],
        output_dir=output,
        samples_per_prompt=4,
        max_new_tokens=12,
        learning_rate=1e-2,
        epochs=3,
        batch_size=4,
        micro_batch_size=2,
        max_length=64,
        checkpoint_every=100,
        device="cpu",
    )
    values.update(overrides)
    return RejectionSamplingConfig(**values)


def test_the_best_sample_is_the_highest_scored_complete_one():
    assert best_of(["a", "b", "c"], [0.2, 0.9, 0.5], [True, True, True]) == 1
    assert best_of(["a", "b", "c"], [0.2, 0.9, 0.5], [True, False, True]) == 2, "a truncated reply ranks last"
    assert best_of(["a", "b"], [0.2, 0.9], [False, False]) == 1


def test_sampling_keeps_the_best_of_k_for_every_prompt(setup):
    policy = load_policy(setup["policy"], device=torch.device("cpu"), dtype=torch.float32)
    rows = load_prompts(setup["prompts"], "train")
    scorer = ShortReplyScorer()
    samples = sample_best(policy, scorer, rows, config(setup, setup["root"] / "unused"))
    assert scorer.calls == [(12 * 4, 3 * 4)], "all K samples of every prompt scored at once, safety flags passed"
    assert [sample.prompt for sample in samples] == [row.prompt for row in rows]
    for sample in samples:
        assert len(sample.scores) == len(sample.complete) == 4
        assert sample.score == scorer.probability([sample.prompt], [sample.reply], [False])[0]
        candidates = [s for s, complete in zip(sample.scores, sample.complete, strict=True) if complete]
        assert sample.score == max(candidates or sample.scores)
        assert sample.ended == bool(candidates)
    assert any(len(set(sample.scores)) > 1 for sample in samples), "the K samples differ"


def test_fine_tuning_labels_only_the_response_tokens():
    batch = sft_batch([([5, 6, 7, 8, 3], 3), ([5, 6, 9], 2)], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 3], [5, 6, 9, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    ignore = IGNORE_INDEX
    assert batch["labels"].tolist() == [[ignore, ignore, ignore, 8, 3], [ignore, ignore, 9, ignore, ignore]]


def test_a_run_writes_a_policy_that_ppo_can_start_from(setup, tmp_path):
    output = tmp_path / "rs"
    steps: list[int] = []
    metrics = train_rejection_sampling(
        config(setup, output), scorer=ShortReplyScorer(), progress=lambda step, total, entry: steps.append(step)
    )
    assert metrics["mean_best_score"] > metrics["mean_sample_score"]
    assert steps == list(range(1, 10)) and metrics["total_steps"] == 9
    losses = [entry["sft/loss"] for entry in metrics["log"]]
    assert losses[-1] < losses[0], losses
    kept = [json.loads(line) for line in (output / "best_samples.jsonl").read_text().splitlines()]
    assert len(kept) == 12 and {"prompt", "reply", "score", "scores", "complete"} <= set(kept[0])
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json", "rejection_sampling.png"):
        assert (output / name).exists(), name
    assert not output.with_name("rs.work").exists()

    ppo = train_ppo(
        PPOConfig(
            policy=output,
            reward_helpfulness=setup["reward"],
            reward_safety=None,
            prompts=setup["prompts"],
            output_dir=tmp_path / "rs-ppo",
            iterations=1,
            rollout_batch_size=4,
            minibatch_size=4,
            max_new_tokens=8,
            device="cpu",
        ),
        scorer=ShortReplyScorer(),
    )
    assert ppo["iterations_run"] == 1 and (tmp_path / "rs-ppo" / "model.safetensors").exists()


def test_a_killed_fine_tuning_resumes_and_ends_where_an_unbroken_one_does(setup, tmp_path):
    short = dict(epochs=1, checkpoint_every=1)
    unbroken = tmp_path / "unbroken"
    train_rejection_sampling(config(setup, unbroken, **short), scorer=ShortReplyScorer())
    resumed = tmp_path / "resumed"
    stopped = train_rejection_sampling(config(setup, resumed, stop_after_steps=2, **short), scorer=ShortReplyScorer())
    assert stopped == {"stopped_at_step": 2, "total_steps": 3}
    assert not resumed.exists()
    scorer = ShortReplyScorer()
    train_rejection_sampling(config(setup, resumed, **short), scorer=scorer)
    assert scorer.calls == [], "the samples of the first attempt are reused, not drawn again"
    a, b = load_file(unbroken / "model.safetensors"), load_file(resumed / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


class MarkerScorer(ShortReplyScorer):
    """ShortReplyScorer, except that MARKER is the best reply there is."""

    MARKER = "Thank you, that is the answer."

    def probability(self, prompts, replies, is_safety) -> list[float]:
        scores = super().probability(prompts, replies, is_safety)
        return [1.0 if reply == self.MARKER else min(score, 0.9) for reply, score in zip(replies, scores, strict=True)]


def _earlier_file(path: Path, setup: dict[str, Path], *, better_for: int) -> Path:
    """An earlier run's best_samples.jsonl: MARKER (its score under that run's model: 0.2) for one train prompt, a
    poor reply for another, and one for a prompt this run does not have."""
    rows = load_prompts(setup["prompts"], "train")

    def line(prompt, reply):
        return {"prompt": prompt, "is_safety": False, "reply": reply, "score": 0.2, "ended": True}

    lines = [
        line(rows[better_for].prompt, MarkerScorer.MARKER),
        line(rows[better_for + 1].prompt, "word " * 40),
        line([{"role": "user", "content": "A prompt of another week"}], MarkerScorer.MARKER),
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in lines))
    return path


@pytest.mark.parametrize("include", [True, False])
def test_the_pool_keeps_an_earlier_iterations_better_sample_unless_switched_off(setup, tmp_path, include):
    earlier = _earlier_file(tmp_path / "earlier.jsonl", setup, better_for=3)
    output = tmp_path / "rs"
    scorer = MarkerScorer()
    metrics = train_rejection_sampling(
        config(setup, output, epochs=1, earlier_samples=[earlier], include_earlier_samples=include), scorer=scorer
    )
    training = [json.loads(line) for line in (output / "training_samples.jsonl").read_text().splitlines()]
    assert len(training) == 12, "one example per train prompt, whatever the pools hold"
    from_earlier = [row for row in training if row["source"]]
    marker = [row for row in training if row["reply"] == MarkerScorer.MARKER]
    if include:
        assert scorer.calls[-1] == (2, 0), "the earlier samples of this run's prompts, scored again (not the third)"
        assert [row["source"] for row in marker] == [str(earlier)]
        assert marker[0]["prompt"] == load_prompts(setup["prompts"], "train")[3].prompt
        assert marker[0]["score"] == 1.0 and marker[0]["kept_score"] == 0.2, "the current model's score decides"
        assert all("word word" not in row["reply"] for row in training), "a worse earlier sample is not taken"
        assert metrics["from_earlier_iterations"] == len(from_earlier) == 1
        assert metrics["from_earlier_iterations_by_file"] == {str(earlier): 1}
        assert metrics["mean_training_score"] > metrics["mean_best_score"]
    else:
        assert len(scorer.calls) == 1, "only this run's own samples were scored"
        assert marker == [] and from_earlier == []
        assert metrics["from_earlier_iterations"] == 0 and metrics["earlier_samples"]["files"] == []
    own = [json.loads(line) for line in (output / "best_samples.jsonl").read_text().splitlines()]
    assert all(row["reply"] != MarkerScorer.MARKER for row in own), "best_samples.jsonl keeps this run's own best"


def test_the_command_line_names_the_earlier_pools_and_switches_them_off():
    from training.cli import config_from_arguments
    from training.rejection_cli import parser

    required = ["--policy", "p", "--reward-helpfulness", "r", "--prompts", "x.jsonl", "--output", "o"]
    pooled = config_from_arguments(
        RejectionSamplingConfig, parser().parse_args([*required, "--earlier-samples", "a", "b"])
    )
    assert pooled.earlier_samples == [Path("a"), Path("b")] and pooled.include_earlier_samples
    alone = config_from_arguments(RejectionSamplingConfig, parser().parse_args([*required, "--no-earlier-samples"]))
    assert alone.earlier_samples == [] and not alone.include_earlier_samples
