"""PPO on a language-model policy, the Llama 2 way (section 3.2.3), with the details that make it work.

Each iteration: draw `rollout_batch_size` train prompts; sample one response each (left-padded
batches, the iteration's own seed); score it with R_c (safety model on safety prompts or when its
score is below 0.15, else helpfulness), at the last real token; the reward is
`whiten(logit(R_c)) - beta * KL` per token (score at the final token, minus a penalty when the
response never produced EOS); GAE advantages, whitened; then one pass over the rollout in minibatches,
one AdamW step per minibatch for the policy (clipped surrogate) and the value model (clipped value
loss). Log-probabilities are recomputed with logits divided by the sampling temperature. Held-out
"test" prompts are scored every `eval_every` iterations; `early_stopping_patience` evaluations without
a new best stop the run, which then returns the best evaluated policy.

A run writes a resumable checkpoint every `checkpoint_every` iterations (policy, value model, both
optimizers, iteration, log, RNG) beside the output directory, which appears complete or not at all.
Reference: Huang et al., "The N Implementation Details of RLHF with PPO" (2024).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from training import ppo_math
from training.checkpointing import RunFiles, config_record, recovered, save_atomically
from training.cli import option
from training.policy import (
    Policy,
    load_policy,
    load_value_model,
    mixed_precision,
    resolve_device,
    save_policy,
    token_values,
    training_dtype,
)
from training.policy_plots import plot_ppo_curves
from training.rollout import PromptRow, Rollout, encode_prompts, generate, load_prompts, response_logprobs
from training.scoring import PiecewiseScorer, Scorer

BEST_DIR = "best"
Progress = Callable[[int, int, dict[str, float]], None]
NO_TRAIN_PROMPTS = "{path} has no train prompts"


@dataclass
class PPOConfig:
    """Everything a run needs; the defaults are Llama 2's where the paper gives one. Fields with `option`
    metadata are the options of `python -m training.ppo_cli` (the policy, reward models and prompts come
    from `add_policy_arguments`)."""

    policy: Path
    """A Hugging Face causal-LM directory: the starting policy, also the frozen reference."""
    reward_helpfulness: Path
    """Helpfulness reward-model directory (training/reward_model.py format)."""
    reward_safety: Path | None
    """Safety reward-model directory; None scores every reply with the helpfulness model."""
    prompts: Path
    """JSONL: {"prompt": [{"role", "content"}, ...], "is_safety": bool, "split": "train" | "test"} per line."""
    output_dir: Path = field(metadata=option("Where to write the new policy directory.", flag="--output"))
    """Created complete at the end of the run."""
    learning_rate: float = field(default=1e-6, metadata=option("Constant policy learning rate."))
    """Llama 2: 1e-6."""
    value_learning_rate: float | None = field(
        default=None, metadata=option("Value model learning rate (default: the policy's).")
    )
    adam_betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-5
    weight_decay: float = field(default=0.1, metadata=option("AdamW weight decay."))
    max_grad_norm: float = field(default=1.0, metadata=option("Gradient clipping norm, per model."))
    clip_range: float = field(default=0.2, metadata=option("PPO ratio clip."))
    value_clip: float = field(default=0.2, metadata=option("Value prediction clip."))
    """How far a value prediction may move from the rollout's before its loss is clipped."""
    kl_beta: float = field(default=0.01, metadata=option("Per-token KL penalty (0.005 above 13B)."))
    """Llama 2: 0.01 up to 13B, 0.005 above."""
    iterations: int = field(default=200, metadata=option("PPO iterations, one rollout batch each."))
    """Llama 2: 200-400."""
    rollout_batch_size: int = field(default=512, metadata=option("Prompts per iteration."))
    """One response each (Llama 2: 512)."""
    minibatch_size: int = field(default=64, metadata=option("Responses per gradient step."))
    """One step per minibatch, one pass over the rollout (Llama 2: 64)."""
    micro_batch_size: int = field(default=8, metadata=option("Responses per forward pass."))
    """Gradients accumulate up to a minibatch."""
    temperature: float = field(default=1.0, metadata=option("Sampling temperature."))
    """Logits are divided by it when log-probabilities are recomputed."""
    top_p: float = field(default=1.0, metadata=option("Nucleus sampling."))
    max_new_tokens: int = field(default=256, metadata=option("Longest response."))
    missing_eos_penalty: float = field(default=1.0, metadata=option("Score penalty for a response without EOS."))
    """Subtracted from the whitened score of a response that hit max_new_tokens without EOS."""
    gamma: float = field(default=1.0, metadata=option("Discount."))
    lam: float = field(default=0.95, metadata=option("GAE lambda."))
    eval_every: int = field(default=10, metadata=option("Iterations between held-out evaluations."))
    """The last iteration is always evaluated."""
    eval_prompts: int = field(default=128, metadata=option("Held-out prompts per evaluation."))
    """The first of the test split."""
    early_stopping_patience: int = field(default=3, metadata=option("Evaluations without a new best."))
    """Evaluations without a new best held-out reward before the run stops."""
    seed: int = field(default=0, metadata=option("Prompt draws, sampling and minibatch order."))
    checkpoint_every: int = field(default=10, metadata=option("Iterations between resumable checkpoints."))
    device: str = field(default="auto", metadata=option("auto, cpu or cuda."))
    """'auto' is cuda if available."""
    bf16: bool | None = field(default=None, metadata=option("bf16 compute, fp32 weights (auto: on GPU only)."))
    """Compute in bf16 under autocast, the frozen reference stored in bf16 (default: on GPU only); the trained
    policy and value model keep fp32 weights."""
    stop_after_iterations: int | None = None
    """Stop (with a checkpoint) after this many iterations: for tests that simulate a killed run."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes recorded with the run."""


@dataclass
class _Models:
    policy: Policy
    reference: Policy
    value: Any
    value_init: str
    policy_optimizer: torch.optim.Optimizer
    value_optimizer: torch.optim.Optimizer


@dataclass
class _Evaluations:
    """Held-out rewards so far and the early-stopping state."""

    before: float = float("nan")
    best: float = float("-inf")
    best_iteration: int = 0
    without_improvement: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def record(self, iteration: int, reward: float) -> bool:
        """Note an evaluation; True when it is a new best."""
        self.history.append({"iteration": iteration, "eval/heldout_reward": reward})
        if reward > self.best:
            self.best, self.best_iteration, self.without_improvement = reward, iteration, 0
            return True
        self.without_improvement += 1
        return False


@dataclass
class Experience:
    """A scored rollout with everything the optimisation pass needs, (batch, response length) tensors."""

    rollout: Rollout
    scores: torch.Tensor
    """R_c per response, (batch,)."""
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    entropy: torch.Tensor
    rewards: torch.Tensor
    kl: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


def train_ppo(config: PPOConfig, *, scorer: Scorer | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Run (or resume) PPO; returns the metrics also written to `metrics.json` in the output directory."""
    _check(config)
    device = resolve_device(config.device)
    dtype = training_dtype(device, config.bf16)
    torch.manual_seed(config.seed)
    models = _load_models(config, device, dtype)
    scorer = scorer or PiecewiseScorer(config.reward_helpfulness, config.reward_safety, device=str(device))
    train_rows = load_prompts(config.prompts, "train")
    if not train_rows:
        raise ValueError(NO_TRAIN_PROMPTS.format(path=config.prompts))
    heldout_rows = load_prompts(config.prompts, "test")[: config.eval_prompts]
    heldout_split = "test" if heldout_rows else "train"
    heldout_rows = heldout_rows or train_rows[: config.eval_prompts]

    files = RunFiles(config.output_dir)
    iteration, log, evaluations = 0, list[dict[str, float]](), _Evaluations()
    saved = files.load_state()
    if saved is not None:
        iteration, log, evaluations = _restore(saved, models)
    else:
        with mixed_precision(device, dtype):
            evaluations.before = heldout_reward(models.policy, scorer, heldout_rows, config)
        evaluations.record(0, evaluations.before)

    stopped_early = False
    while iteration < config.iterations:
        iteration += 1
        with mixed_precision(device, dtype):
            entry = ppo_iteration(models, scorer, train_rows, config, iteration)
        if iteration % config.eval_every == 0 or iteration == config.iterations:
            with mixed_precision(device, dtype):
                entry["eval/heldout_reward"] = heldout_reward(models.policy, scorer, heldout_rows, config)
            if evaluations.record(iteration, entry["eval/heldout_reward"]):
                save_atomically(files.work / BEST_DIR, lambda directory: save_policy(models.policy, directory))
            stopped_early = evaluations.without_improvement >= config.early_stopping_patience
        log.append(entry)
        if progress is not None:
            progress(iteration, config.iterations, entry)
        if stopped_early:
            break
        stopping = config.stop_after_iterations is not None and iteration >= config.stop_after_iterations
        if iteration % config.checkpoint_every == 0 or (stopping and iteration < config.iterations):
            files.save_state(_resume_state(models, iteration, log, evaluations))
        if stopping and iteration < config.iterations:
            return {"stopped_at_iteration": iteration, "iterations": config.iterations}

    metrics: dict[str, Any] = {
        "config": config_record(config),
        "log": log,
        "evaluations": evaluations.history,
        "heldout_split": heldout_split,
        "heldout_reward_before": evaluations.before,
        "heldout_reward_after": evaluations.best if stopped_early else evaluations.history[-1]["eval/heldout_reward"],
        "iterations_run": iteration,
        "stopped_early": stopped_early,
        "policy_from_iteration": evaluations.best_iteration if stopped_early else iteration,
        "value_init": models.value_init,
    }
    final = models.policy
    if stopped_early:  # the best evaluated policy, not the one that stopped improving
        best = config.policy if evaluations.best_iteration == 0 else recovered(files.work / BEST_DIR)
        final = load_policy(best, device=device, dtype=torch.float32, trainable=False)
    files.finish(partial(_write_policy, final, metrics))
    return metrics


def _check(config: PPOConfig) -> None:
    if config.temperature <= 0:
        raise ValueError(f"temperature must be positive, got {config.temperature}")
    if config.rollout_batch_size % config.minibatch_size:
        raise ValueError(
            f"rollout_batch_size ({config.rollout_batch_size}) must be a multiple of "
            f"minibatch_size ({config.minibatch_size})"
        )
    for name in ("iterations", "minibatch_size", "micro_batch_size", "eval_every", "checkpoint_every"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")


def _load_models(config: PPOConfig, device: torch.device, dtype: torch.dtype) -> _Models:
    """The trained policy and value model in fp32 (computing under autocast); the frozen reference in `dtype`."""
    policy = load_policy(config.policy, device=device, dtype=torch.float32)
    reference = load_policy(config.policy, device=device, dtype=dtype, trainable=False)
    value, value_init = load_value_model(
        config.policy, policy.tokenizer, config.reward_helpfulness, device=device, dtype=torch.float32
    )

    def adamw(model: Any, learning_rate: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            model.parameters(),
            lr=learning_rate,
            betas=config.adam_betas,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )

    value_lr = config.value_learning_rate if config.value_learning_rate is not None else config.learning_rate
    return _Models(
        policy, reference, value, value_init, adamw(policy.model, config.learning_rate), adamw(value, value_lr)
    )


def _iteration_seed(config: PPOConfig, iteration: int) -> int:
    """The seed of one iteration's prompt draw, sampling and minibatch order: a resumed run redraws the same."""
    return config.seed * 1_000_003 + iteration


@contextmanager
def _timed(entry: dict[str, float], name: str, device: torch.device) -> Iterator[None]:
    started = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    entry[f"time/{name}"] = time.perf_counter() - started


def ppo_iteration(
    models: _Models, scorer: Scorer, rows: Sequence[PromptRow], config: PPOConfig, iteration: int
) -> dict[str, float]:
    """One rollout batch and one optimisation pass over it; returns the iteration's log entry."""
    device = next(models.policy.model.parameters()).device
    seed = _iteration_seed(config, iteration)
    batch = random.Random(seed).choices(list(rows), k=config.rollout_batch_size)
    entry: dict[str, float] = {"iteration": iteration}
    with _timed(entry, "generation", device):
        rollout = generate(
            models.policy,
            encode_prompts(models.policy, [row.prompt for row in batch]),
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            seed=seed,
        )
    with _timed(entry, "scoring", device):
        scores = scorer.probability([row.prompt for row in batch], rollout.texts, [row.is_safety for row in batch])
    with _timed(entry, "passes", device):
        experience = make_experience(models, rollout, torch.tensor(scores, device=device), config)
    with _timed(entry, "optimisation", device):
        stats = optimise(models, experience, config, seed)
    mask = rollout.mask
    entry.update(
        {
            "rollout/score": float(experience.scores.mean()),
            "rollout/reward": float(experience.rewards.sum(1).mean()),
            "rollout/response_length": float(mask.sum(1).float().mean()),
            "rollout/eos_rate": float(rollout.ended.float().mean()),
            "ppo/kl": float(experience.kl.sum(1).mean()),
            "ppo/entropy": float(ppo_math.masked_mean(experience.entropy, mask)),
            "ppo/explained_variance": float(ppo_math.explained_variance(experience.values, experience.returns, mask)),
            **stats,
        }
    )
    return entry


@torch.no_grad()
def make_experience(models: _Models, rollout: Rollout, scores: torch.Tensor, config: PPOConfig) -> Experience:
    """Old and reference log-probabilities, values and entropy (micro-batched), then rewards and advantages."""
    start = rollout.query.shape[1]
    parts: dict[str, list[torch.Tensor]] = {"logprobs": [], "ref": [], "values": [], "entropy": []}
    for first in range(0, rollout.response.shape[0], config.micro_batch_size):
        part = rollout.rows(slice(first, first + config.micro_batch_size))
        logprobs, entropy = response_logprobs(models.policy.model, part, config.temperature, with_entropy=True)
        ref_logprobs, _ = response_logprobs(models.reference.model, part, config.temperature)
        values = token_values(models.value, part.input_ids, part.attention_mask, part.position_ids)
        assert entropy is not None
        parts["logprobs"].append(logprobs)
        parts["ref"].append(ref_logprobs)
        parts["values"].append(values[:, start - 1 : -1])
        parts["entropy"].append(entropy)
    logprobs, ref_logprobs, values, entropy = (torch.cat(parts[key]) for key in parts)
    mask = rollout.mask
    rewards, kl = ppo_math.token_rewards(
        ppo_math.whitened_logit(scores.float()),
        logprobs,
        ref_logprobs,
        mask,
        beta=config.kl_beta,
        missing_eos=~rollout.ended,
        missing_eos_penalty=config.missing_eos_penalty,
    )
    advantages, returns = ppo_math.generalized_advantages(
        rewards, values * mask, mask, gamma=config.gamma, lam=config.lam
    )
    return Experience(rollout, scores, logprobs, ref_logprobs, values * mask, entropy, rewards, kl, advantages, returns)


def optimise(models: _Models, experience: Experience, config: PPOConfig, seed: int) -> dict[str, float]:
    """One pass over the rollout in shuffled minibatches, one policy and one value step per minibatch."""
    rollout = experience.rollout
    start = rollout.query.shape[1]
    order = torch.randperm(rollout.response.shape[0], generator=torch.Generator().manual_seed(seed))
    totals = {"ppo/policy_loss": 0.0, "ppo/value_loss": 0.0, "ppo/clipfrac": 0.0, "ppo/approx_kl": 0.0}
    micro_batches = 0
    for first in range(0, len(order), config.minibatch_size):
        minibatch = order[first : first + config.minibatch_size]
        models.policy_optimizer.zero_grad(set_to_none=True)
        models.value_optimizer.zero_grad(set_to_none=True)
        for micro_first in range(0, len(minibatch), config.micro_batch_size):
            index = minibatch[micro_first : micro_first + config.micro_batch_size].to(rollout.query.device)
            part, mask, share = rollout.rows(index), rollout.mask[index], len(index) / len(minibatch)
            logprobs, _ = response_logprobs(models.policy.model, part, config.temperature)
            loss, stats = ppo_math.policy_loss(
                logprobs, experience.logprobs[index], experience.advantages[index], mask, clip=config.clip_range
            )
            values = token_values(models.value, part.input_ids, part.attention_mask, part.position_ids)
            value_loss = ppo_math.value_loss(
                values[:, start - 1 : -1] * mask,
                experience.values[index],
                experience.returns[index],
                mask,
                clip=config.value_clip,
            )
            (loss * share).backward()
            (value_loss * share).backward()
            totals["ppo/policy_loss"] += loss.item()
            totals["ppo/value_loss"] += value_loss.item()
            totals["ppo/clipfrac"] += stats["ppo/clipfrac"].item()
            totals["ppo/approx_kl"] += stats["ppo/approx_kl"].item()
            micro_batches += 1
        torch.nn.utils.clip_grad_norm_(models.policy.model.parameters(), config.max_grad_norm)
        torch.nn.utils.clip_grad_norm_(models.value.parameters(), config.max_grad_norm)
        models.policy_optimizer.step()
        models.value_optimizer.step()
    return {name: total / micro_batches for name, total in totals.items()}


def heldout_reward(policy: Policy, scorer: Scorer, rows: Sequence[PromptRow], config: PPOConfig) -> float:
    """Mean R_c of one sampled response per held-out prompt, under a fixed seed so evaluations compare."""
    prompts = [row.prompt for row in rows]
    rollout = generate(
        policy,
        encode_prompts(policy, prompts),
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
        batch_size=config.rollout_batch_size,
    )
    scores = scorer.probability(prompts, rollout.texts, [row.is_safety for row in rows])
    return sum(scores) / len(scores)


def _resume_state(
    models: _Models, iteration: int, log: list[dict[str, float]], evaluations: _Evaluations
) -> dict[str, Any]:
    """Both models and optimizers, the iteration, log and evaluations, and the RNG states."""
    return {
        "policy": models.policy.model.state_dict(),
        "value": models.value.state_dict(),
        "policy_optimizer": models.policy_optimizer.state_dict(),
        "value_optimizer": models.value_optimizer.state_dict(),
        "iteration": iteration,
        "log": log,
        "evaluations": asdict(evaluations),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
    }


def _restore(state: dict[str, Any], models: _Models) -> tuple[int, list[dict[str, float]], _Evaluations]:
    """Put a saved state back into the models, optimizers and RNGs; the iteration, log and evaluations."""
    models.policy.model.load_state_dict(state["policy"])
    models.value.load_state_dict(state["value"])
    models.policy_optimizer.load_state_dict(state["policy_optimizer"])
    models.value_optimizer.load_state_dict(state["value_optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    return state["iteration"], state["log"], _Evaluations(**state["evaluations"])


def _write_policy(policy: Policy, metrics: dict[str, Any], directory: Path) -> None:
    """The policy directory with metrics.json and ppo_curves.png."""
    save_policy(policy, directory)
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_ppo_curves(metrics["log"], metrics["evaluations"], directory / "ppo_curves.png")
