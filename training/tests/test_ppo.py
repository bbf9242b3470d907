"""PPO end to end on tiny models: learning a synthetic reward, resuming, the value model's origin, checkpoints."""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from sampler.engines.base import GenerationRequest
from sampler.engines.tiny import build_tiny_checkpoint, build_tiny_tokenizer
from sampler.engines.transformers_engine import TransformersEngine
from training.policy import load_policy, load_value_model
from training.ppo import PPOConfig, train_ppo
from training.ppo_math import logprobs_of
from training.reward_model import PAD_IS_EOS, head_module
from training.rollout import Rollout, encode_prompts, generate, left_pad, load_prompts, response_logprobs
from training.tests.policy_setup import ShortReplyScorer, build_policy, build_reward_model, write_prompts

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ppo")
    policy = build_policy(root / "policy")
    return {
        "root": root,
        "policy": policy,
        "reward": build_reward_model(policy, root / "reward"),
        "prompts": write_prompts(root / "prompts.jsonl"),
    }


def config(setup: dict[str, Path], output: Path, **overrides: Any) -> PPOConfig:
    values: dict[str, Any] = dict(
        policy=setup["policy"],
        reward_helpfulness=setup["reward"],
        reward_safety=None,
        prompts=setup["prompts"],
        output_dir=output,
        learning_rate=1e-2,
        iterations=8,
        rollout_batch_size=16,
        minibatch_size=4,
        micro_batch_size=4,
        max_new_tokens=16,
        eval_every=4,
        early_stopping_patience=10,
        checkpoint_every=100,
        device="cpu",
    )
    values.update(overrides)
    return PPOConfig(**values)


@pytest.fixture(scope="module")
def trained(setup) -> tuple[Path, dict[str, Any], list[tuple[int, int, dict[str, float]]]]:
    output = setup["root"] / "new-policy"
    progress: list[tuple[int, int, dict[str, float]]] = []
    metrics = train_ppo(config(setup, output), scorer=ShortReplyScorer(), progress=lambda *call: progress.append(call))
    return output, metrics, progress


def test_ppo_raises_a_learnable_reward(trained):
    output, metrics, progress = trained
    scores = [entry["rollout/score"] for entry in metrics["log"]]
    assert sum(scores[-2:]) / 2 > sum(scores[:2]) / 2 + 0.1, scores
    assert metrics["heldout_reward_after"] > metrics["heldout_reward_before"] + 0.1
    lengths = [entry["rollout/response_length"] for entry in metrics["log"]]
    assert lengths[-1] < lengths[0]
    assert metrics["iterations_run"] == 8 and not metrics["stopped_early"]
    assert metrics["value_init"] == "reward_model"
    assert [step for step, _, _ in progress] == list(range(1, 9)) and progress[-1][1] == 8
    for name in (
        "ppo/kl",
        "ppo/clipfrac",
        "ppo/approx_kl",
        "ppo/entropy",
        "ppo/explained_variance",
        "rollout/response_length",
        "rollout/eos_rate",
        "rollout/score",
        "ppo/policy_loss",
        "ppo/value_loss",
        "time/generation",
        "time/optimisation",
    ):
        assert name in metrics["log"][0], name
    assert metrics["log"][-1]["ppo/kl"] > 0, "the policy moved away from the reference"
    assert json.loads((output / "metrics.json").read_text())["iterations_run"] == 8
    assert (output / "ppo_curves.png").stat().st_size > 10_000
    assert not output.with_name("new-policy.work").exists()


def test_the_new_policy_loads_in_the_transformers_engine_and_generates(trained):
    output, _, _ = trained
    engine = TransformersEngine(device="cpu")
    [result] = engine.generate(
        [
            GenerationRequest(
                checkpoint=str(output),
                messages=[{"role": "user", "content": "Hello"}],
                temperature=0.7,
                top_p=1.0,
                max_new_tokens=8,
                seed=1,
            )
        ]
    )
    assert result.completion_tokens >= 1 and result.finish_reason in {"stop", "length"}


def test_the_value_model_starts_from_a_reward_model_with_the_policy_vocabulary(setup):
    policy = load_policy(setup["policy"], device=CPU, dtype=torch.float32)
    value, origin = load_value_model(
        setup["policy"], policy.tokenizer, setup["reward"], device=CPU, dtype=torch.float32
    )
    assert origin == "reward_model"
    reward_weights = load_file(setup["reward"] / "model.safetensors")
    torch.testing.assert_close(head_module(value).weight, reward_weights["score.weight"])
    assert value.training is False and value.config.attention_dropout == 0.0


def test_the_value_model_starts_from_the_policy_when_the_reward_model_reads_other_tokens(setup, tmp_path):
    reward = build_reward_model(build_tiny_checkpoint(tmp_path / "other", seed=3), tmp_path / "other-reward")
    build_tiny_tokenizer(vocab_size=320).save_pretrained(reward)  # another vocabulary
    policy = load_policy(setup["policy"], device=CPU, dtype=torch.float32)
    value, origin = load_value_model(setup["policy"], policy.tokenizer, reward, device=CPU, dtype=torch.float32)
    assert origin == "policy"
    policy_weights = load_file(setup["policy"] / "model.safetensors")
    torch.testing.assert_close(value.model.embed_tokens.weight, policy_weights["model.embed_tokens.weight"])
    assert not torch.equal(head_module(value).weight, load_file(reward / "model.safetensors")["score.weight"])


def test_a_killed_run_resumes_and_ends_where_an_unbroken_one_does(setup, tmp_path):
    small = dict(iterations=3, rollout_batch_size=8, minibatch_size=4, max_new_tokens=8, eval_every=2)
    unbroken = tmp_path / "unbroken"
    train_ppo(config(setup, unbroken, **small), scorer=ShortReplyScorer())
    resumed = tmp_path / "resumed"
    stopped = train_ppo(config(setup, resumed, stop_after_iterations=2, **small), scorer=ShortReplyScorer())
    assert stopped == {"stopped_at_iteration": 2, "iterations": 3}
    assert not resumed.exists(), "a stopped run must not leave a policy behind"
    steps: list[int] = []
    metrics = train_ppo(
        config(setup, resumed, **small),
        scorer=ShortReplyScorer(),
        progress=lambda step, total, entry: steps.append(step),
    )
    assert steps == [3] and metrics["iterations_run"] == 3 and len(metrics["log"]) == 3
    a, b = load_file(unbroken / "model.safetensors"), load_file(resumed / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    assert _without_timings(json.loads((unbroken / "metrics.json").read_text())["log"]) == _without_timings(
        metrics["log"]
    )


def _without_timings(log: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{key: value for key, value in entry.items() if not key.startswith("time/")} for entry in log]


class HeldOutSchedule(ShortReplyScorer):
    """Rollouts of 8 replies score as ShortReplyScorer; each held-out evaluation (4 replies) gets the next value."""

    def __init__(self, heldout: list[float]) -> None:
        super().__init__()
        self.heldout = iter(heldout)

    def probability(self, prompts, replies, is_safety):
        if len(replies) == 4:
            return [next(self.heldout)] * 4
        return super().probability(prompts, replies, is_safety)


def test_early_stopping_returns_the_best_evaluated_policy(setup, tmp_path):
    small = dict(rollout_batch_size=8, minibatch_size=8, max_new_tokens=8, eval_every=1, eval_prompts=4)
    output = tmp_path / "early"
    metrics = train_ppo(
        config(setup, output, iterations=6, early_stopping_patience=2, **small),
        scorer=HeldOutSchedule([0.5, 0.7, 0.6, 0.55, 0.9, 0.9]),
    )
    assert metrics["stopped_early"] and metrics["iterations_run"] == 3
    assert metrics["heldout_reward_before"] == 0.5 and metrics["heldout_reward_after"] == 0.7
    assert metrics["policy_from_iteration"] == 1
    one_iteration = tmp_path / "one"
    train_ppo(config(setup, one_iteration, iterations=1, **small), scorer=HeldOutSchedule([0.5, 0.7]))
    best, after_one = load_file(output / "model.safetensors"), load_file(one_iteration / "model.safetensors")
    for name in best:
        torch.testing.assert_close(best[name], after_one[name], msg=name)


def test_a_tokenizer_that_pads_with_eos_is_refused(tmp_path):
    policy = build_tiny_checkpoint(tmp_path / "pad-is-eos")
    tokenizer = build_tiny_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(policy)
    with pytest.raises(ValueError, match="pad must differ from EOS"):
        load_policy(policy, device=CPU, dtype=torch.float32)
    assert "pad must differ from EOS" in PAD_IS_EOS


def test_logprobs_recomputed_in_the_trainer_match_the_sampler(setup):
    policy = load_policy(setup["policy"], device=CPU, dtype=torch.float32)
    prompts = encode_prompts(policy, [row.prompt for row in load_prompts(setup["prompts"])[:4]])
    prompts[0] = prompts[0] + prompts[0]  # different lengths: left padding matters
    query, query_mask = left_pad(prompts, policy.pad_token_id)
    torch.manual_seed(0)
    output = policy.model.generate(
        input_ids=query,
        attention_mask=query_mask,
        max_new_tokens=6,
        do_sample=True,
        temperature=0.7,
        top_k=0,
        top_p=1.0,
        eos_token_id=-1,
        pad_token_id=policy.pad_token_id,
        return_dict_in_generate=True,
        output_logits=True,
    )
    response = output.sequences[:, query.shape[1] :]
    rollout = Rollout(
        query, query_mask, response, torch.ones_like(response), torch.zeros(4, dtype=torch.bool), [""] * 4
    )
    sampler = logprobs_of(torch.stack(output.logits, dim=1), response, 0.7)
    trainer, _ = response_logprobs(policy.model, rollout, 0.7)
    torch.testing.assert_close(trainer, sampler, rtol=1e-4, atol=1e-4)
    untempered, _ = response_logprobs(policy.model, rollout, 1.0)
    assert not torch.allclose(untempered, sampler, atol=1e-3)


@pytest.mark.parametrize(("eos_boost", "ended", "length"), [(50.0, True, 1), (-50.0, False, 6)])
def test_responses_are_cut_after_eos_and_flagged_without_it(tmp_path, eos_boost, ended, length):
    policy = load_policy(build_policy(tmp_path / "p", eos_boost=eos_boost), device=CPU, dtype=torch.float32)
    prompts = encode_prompts(
        policy, [[{"role": "user", "content": "Hi"}], [{"role": "user", "content": "Hello there"}]]
    )
    rollout = generate(policy, prompts, temperature=1.0, top_p=1.0, max_new_tokens=6, seed=0)
    assert rollout.ended.tolist() == [ended, ended]
    assert rollout.mask.sum(1).tolist() == [length, length]
    assert (rollout.response[rollout.mask == 0] == policy.pad_token_id).all()
    if ended:
        assert rollout.texts == ["", ""] and (rollout.response[:, 0] == policy.eos_token_id).all()
    again = generate(policy, prompts, temperature=1.0, top_p=1.0, max_new_tokens=6, seed=0)
    assert torch.equal(again.response, rollout.response), "the same seed draws the same rollout"


def test_a_rollout_batch_that_minibatches_do_not_divide_is_refused(setup, tmp_path):
    with pytest.raises(ValueError, match="multiple of minibatch_size"):
        train_ppo(replace(config(setup, tmp_path / "x"), rollout_batch_size=10), scorer=ShortReplyScorer())


def test_bf16_computes_in_bf16_and_keeps_the_trained_weights_in_fp32(setup, tmp_path):
    output = tmp_path / "bf16"
    small = dict(iterations=1, rollout_batch_size=4, minibatch_size=4, max_new_tokens=6, bf16=True)
    metrics = train_ppo(config(setup, output, **small), scorer=ShortReplyScorer())
    assert metrics["iterations_run"] == 1
    weights = load_file(output / "model.safetensors")
    assert {tensor.dtype for tensor in weights.values()} == {torch.float32}
    assert not torch.equal(
        weights["lm_head.weight"], load_file(setup["policy"] / "model.safetensors")["lm_head.weight"]
    )
