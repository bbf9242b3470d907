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

Rollouts come from a rollout engine (`rollout_engine`: transformers in this process, or vLLM on GPU with the
new weights loaded after each update; training/rollout_engine.py). Under torchrun the run is data-parallel:
each process samples its generation calls and scores its share, the no-grad passes and every minibatch are split
across processes, DDP (or FSDP2 with `fsdp`) averages the gradients, and rank 0 writes; the same global batch and
`generation_batch_size` end where one process does (training/ppo_update.py, training/ppo_models.py).

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
from training.distributed import Runtime, barrier
from training.distributed import runtime as distributed_runtime
from training.policy import Policy, load_policy, mixed_precision, save_policy, training_dtype
from training.policy_plots import plot_ppo_curves
from training.ppo_models import PolicyModels, load_model_states, load_models, model_states, unsharded_policy
from training.ppo_update import make_experience, optimise
from training.rollout import PromptRow, encode_prompts, load_prompts
from training.rollout_engine import ENGINES, RolloutEngine, Sampling, distributed_rollout, make_engine
from training.scoring import PiecewiseScorer, Scorer, sharded_scorer

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
    rollout_engine: str = field(default="transformers", metadata=option("transformers (this process) or vllm (GPU)."))
    """What rollouts are sampled with (training/rollout_engine.py): vllm loads the new weights after each update."""
    generation_batch_size: int | None = field(
        default=None, metadata=option("Prompts per generation call (default: a process's share of the step).")
    )
    """Each call samples under its own seed: the same value gives the same rollouts on any number of processes."""
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata=option("vllm: share of the GPU for its weights and KV cache (training has the rest).")
    )
    fsdp: bool = field(default=False, metadata=option("Under torchrun: shard the models (FSDP2) instead of DDP."))
    """Under torchrun, shard parameters, gradients and optimizer states of the policy and value model (and the
    reference) across processes instead of replicating them (DDP)."""
    stop_after_iterations: int | None = None
    """Stop (with a checkpoint) after this many iterations: for tests that simulate a killed run."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes recorded with the run."""


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


def train_ppo(config: PPOConfig, *, scorer: Scorer | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Run (or resume) PPO, on one process or data-parallel under torchrun; returns the metrics also written to
    `metrics.json` in the output directory (by the main process)."""
    _check(config)
    runtime = distributed_runtime(config.device)
    if config.minibatch_size % runtime.world:
        raise ValueError(
            f"minibatch_size ({config.minibatch_size}) must be a multiple of the {runtime.world} processes"
        )
    dtype = training_dtype(runtime.device, config.bf16)
    torch.manual_seed(config.seed)
    models = load_models(config, runtime, dtype)
    engine = make_engine(
        config.rollout_engine,
        models.policy,
        runtime,
        checkpoint=str(config.policy),
        sharded=models.sharded,
        dtype=dtype,
        gpu_memory_utilization=config.vllm_gpu_memory_utilization,
    )
    scorer = scorer or PiecewiseScorer(config.reward_helpfulness, config.reward_safety, device=str(runtime.device))
    train_rows = load_prompts(config.prompts, "train")
    if not train_rows:
        raise ValueError(NO_TRAIN_PROMPTS.format(path=config.prompts))
    heldout_rows = load_prompts(config.prompts, "test")[: config.eval_prompts]
    run = _Run(config, models, engine, sharded_scorer(scorer, runtime), dtype, train_rows, heldout_rows, "test")
    if not heldout_rows:
        run.heldout_rows, run.heldout_split = train_rows[: config.eval_prompts], "train"
    try:
        return _iterate(run, progress)
    finally:
        engine.close()


@dataclass
class _Run:
    config: PPOConfig
    models: PolicyModels
    engine: RolloutEngine
    scorer: Scorer
    dtype: torch.dtype
    train_rows: list[PromptRow]
    heldout_rows: list[PromptRow]
    heldout_split: str

    @property
    def runtime(self) -> Runtime:
        return self.models.runtime

    def heldout_reward(self) -> float:
        with mixed_precision(self.runtime.device, self.dtype):
            return heldout_reward(
                self.models.policy, self.engine, self.scorer, self.heldout_rows, self.config, self.runtime
            )


def _iterate(run: _Run, progress: Progress | None) -> dict[str, Any]:
    """The iterations from where the run stands, then the policy directory (see train_ppo)."""
    config, models, runtime = run.config, run.models, run.runtime
    files = RunFiles(config.output_dir)
    iteration, log, evaluations = 0, list[dict[str, float]](), _Evaluations()
    saved = files.load_state()
    if saved is not None:
        iteration, log, evaluations = _restore(saved, models)
    else:
        evaluations.before = run.heldout_reward()
        evaluations.record(0, evaluations.before)

    stopped_early = False
    while iteration < config.iterations:
        iteration += 1
        with mixed_precision(runtime.device, run.dtype):
            entry = ppo_iteration(models, run.engine, run.scorer, run.train_rows, config, iteration)
        if iteration % config.eval_every == 0 or iteration == config.iterations:
            entry["eval/heldout_reward"] = run.heldout_reward()
            if evaluations.record(iteration, entry["eval/heldout_reward"]):
                best = unsharded_policy(models, config.policy)
                if best is not None and runtime.main:
                    save_atomically(files.work / BEST_DIR, partial(save_policy, best))
            stopped_early = evaluations.without_improvement >= config.early_stopping_patience
        log.append(entry)
        if progress is not None and runtime.main:
            progress(iteration, config.iterations, entry)
        if stopped_early:
            break
        stopping = config.stop_after_iterations is not None and iteration >= config.stop_after_iterations
        if iteration % config.checkpoint_every == 0 or (stopping and iteration < config.iterations):
            state = _resume_state(models, iteration, log, evaluations)
            if runtime.main:
                files.save_state(state)
        if stopping and iteration < config.iterations:
            barrier(runtime)
            return {"stopped_at_iteration": iteration, "iterations": config.iterations}
    return _finish(run, files, log, evaluations, iteration, stopped_early)


def _finish(
    run: _Run,
    files: RunFiles,
    log: list[dict[str, float]],
    evaluations: _Evaluations,
    iteration: int,
    stopped_early: bool,
) -> dict[str, Any]:
    """The metrics, and the policy directory written by the main process: the best evaluated policy when the run
    stopped early, else the last one."""
    config, models = run.config, run.models
    metrics: dict[str, Any] = {
        "config": config_record(config),
        "log": log,
        "evaluations": evaluations.history,
        "heldout_split": run.heldout_split,
        "heldout_reward_before": evaluations.before,
        "heldout_reward_after": evaluations.best if stopped_early else evaluations.history[-1]["eval/heldout_reward"],
        "iterations_run": iteration,
        "stopped_early": stopped_early,
        "policy_from_iteration": evaluations.best_iteration if stopped_early else iteration,
        "value_init": models.value_init,
        "processes": run.runtime.world,
    }
    final = None if stopped_early else unsharded_policy(models, config.policy)
    if run.runtime.main:
        if stopped_early:  # the best evaluated policy, not the one that stopped improving
            best = config.policy if evaluations.best_iteration == 0 else recovered(files.work / BEST_DIR)
            final = load_policy(best, device=run.runtime.device, dtype=torch.float32, trainable=False)
        assert final is not None
        files.finish(partial(_write_policy, final, metrics))
    barrier(run.runtime)
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
    if config.rollout_engine not in ENGINES:
        raise ValueError(f"rollout_engine must be one of {', '.join(ENGINES)}, got {config.rollout_engine!r}")


def _sampling(config: PPOConfig) -> Sampling:
    return Sampling(config.temperature, config.top_p, config.max_new_tokens)


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
    models: PolicyModels,
    engine: RolloutEngine,
    scorer: Scorer,
    rows: Sequence[PromptRow],
    config: PPOConfig,
    iteration: int,
) -> dict[str, float]:
    """One rollout batch and one optimisation pass over it; returns the iteration's log entry (the same on every
    process). Each process samples its generation calls and scores its share, and every process then holds the
    whole scored rollout; the no-grad passes and the gradients are split across processes."""
    device = models.runtime.device
    seed = _iteration_seed(config, iteration)
    batch = random.Random(seed).choices(list(rows), k=config.rollout_batch_size)
    entry: dict[str, float] = {"iteration": iteration}
    with _timed(entry, "generation", device):
        rollout = distributed_rollout(
            engine,
            models.policy,
            encode_prompts(models.policy, [row.prompt for row in batch]),
            _sampling(config),
            seed=seed,
            call_size=config.generation_batch_size,
            runtime=models.runtime,
        )
    with _timed(entry, "scoring", device):
        scores = scorer.probability([row.prompt for row in batch], rollout.texts, [row.is_safety for row in batch])
    with _timed(entry, "passes", device):
        experience = make_experience(models, rollout, torch.tensor(scores, device=device), config)
    with _timed(entry, "optimisation", device):
        stats = optimise(models, experience, config, seed)
    engine.sync_weights(models.policy.model)  # the engine generates with the updated weights from now on
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


def heldout_reward(
    policy: Policy,
    engine: RolloutEngine,
    scorer: Scorer,
    rows: Sequence[PromptRow],
    config: PPOConfig,
    runtime: Runtime,
) -> float:
    """Mean R_c of one sampled response per held-out prompt, under a fixed seed so evaluations compare."""
    prompts = [row.prompt for row in rows]
    rollout = distributed_rollout(
        engine,
        policy,
        encode_prompts(policy, prompts),
        _sampling(config),
        seed=config.seed,
        call_size=config.generation_batch_size or min(config.rollout_batch_size, -(-len(prompts) // runtime.world)),
        runtime=runtime,
    )
    scores = scorer.probability(prompts, rollout.texts, [row.is_safety for row in rows])
    return sum(scores) / len(scores)


def _resume_state(
    models: PolicyModels, iteration: int, log: list[dict[str, float]], evaluations: _Evaluations
) -> dict[str, Any]:
    """Both models and optimizers (whole, a collective call when sharded), the iteration, log and evaluations, and
    the RNG states."""
    return {
        **model_states(models),
        "iteration": iteration,
        "log": log,
        "evaluations": asdict(evaluations),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
    }


def _restore(state: dict[str, Any], models: PolicyModels) -> tuple[int, list[dict[str, float]], _Evaluations]:
    """Put a saved state back into the models, optimizers and RNGs; the iteration, log and evaluations."""
    load_model_states(state, models)
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    return state["iteration"], state["log"], _Evaluations(**state["evaluations"])


def _write_policy(policy: Policy, metrics: dict[str, Any], directory: Path) -> None:
    """The policy directory with metrics.json and ppo_curves.png."""
    save_policy(policy, directory)
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_ppo_curves(metrics["log"], metrics["evaluations"], directory / "ppo_curves.png")
