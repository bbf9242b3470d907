"""Training sections: reward-model training MFU, and where one PPO iteration spends its time.

MFU is ``6 * N * tokens/s / peak``, with N the parameters of the matrix products (the embedding table and the
LM head, which a reward model does not have, left out); attention's own FLOPs are not counted, so it is a
slight underestimate. Every training sequence is cut to exactly ``reward_max_length`` tokens, so the tokens
counted are the tokens computed on (no padding).

The trainers are imported inside the sections, after `hardware.stub_absent_modules` has run.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from bench.gpu.models import Built, words
from bench.gpu.runner import Context
from preference_format import SCHEMA_VERSION

MFU = "6 x backbone parameters x tokens/s / peak dense bf16 FLOP/s (attention FLOPs not counted)"


def write_export(directory: Path, built: Built, pairs: int, max_length: int) -> Path:
    """An export directory (train split only) whose every (dialogue, reply) is longer than ``max_length`` tokens."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = built.shape.vocab
    with (directory / "train.jsonl").open("w") as handle:
        for index in range(pairs):
            row = {
                "prompt": [{"role": "user", "content": words(16, index * 16, vocab)}],
                "chosen": [{"role": "assistant", "content": words(max_length, 2 * index, vocab)}],
                "rejected": [{"role": "assistant", "content": words(max_length, 2 * index + 1, vocab)}],
                "margin": 1.0,
                "strength": "better",
                "batch": "gpu-check",
                "split": "train",
            }
            handle.write(json.dumps(row) + "\n")
    manifest = {"schema_version": SCHEMA_VERSION, "export_id": 0, "filters": {}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def reward_mfu(context: Context) -> dict[str, Any]:
    """Steady-state tokens per second of `train_reward_model` (first step to last), and its MFU."""
    from training.reward_trainer import RewardTrainingConfig, train_reward_model

    profile = context.profile
    built = context.workspace.model(profile.model)
    work = context.workspace.scratch("reward")
    stamps: list[float] = []
    bf16 = context.cuda  # bf16 on CPU is emulated and slow; the dry run measures fp32
    train_reward_model(
        RewardTrainingConfig(
            export_dir=write_export(work / "export", built, profile.reward_pairs, profile.reward_max_length),
            backbone=built.path,
            output_dir=work / "reward",
            batch_size=profile.reward_batch_size,
            micro_batch_size=profile.reward_micro_batch_size,
            max_length=profile.reward_max_length,
            device=str(context.torch_device),
            bf16=bf16,
            checkpoint_every=10**9,
        ),
        progress=lambda step, total, entry: stamps.append(_synchronized_clock(context)),
    )
    steps = len(stamps) - 1
    tokens_per_step = 2 * profile.reward_batch_size * profile.reward_max_length
    tokens_per_s = steps * tokens_per_step / (stamps[-1] - stamps[0])
    flops = 6 * built.backbone_parameters * tokens_per_s
    peak = context.device.peak_tflops
    return {
        "model": built.name,
        "dtype": "bfloat16" if bf16 else "float32",
        "backbone_parameters": built.backbone_parameters,
        "pairs_per_step": profile.reward_batch_size,
        "micro_batch_pairs": profile.reward_micro_batch_size,
        "sequence_tokens": profile.reward_max_length,
        "steps_timed": steps,
        "tokens_per_s": round(tokens_per_s, 1),
        "achieved_tflops": round(flops / 1e12, 3),
        "mfu": round(flops / (peak * 1e12), 4) if peak else None,
        "mfu_formula": MFU if peak else "not computed: the device's peak FLOP/s is unknown (GPU_CHECK_PEAK_TFLOPS)",
    }


def _synchronized_clock(context: Context) -> float:
    """The time once the device has finished the work queued so far (the optimizer step runs asynchronously)."""
    if context.cuda:
        torch.cuda.synchronize(context.torch_device)
    return time.perf_counter()


class _Enough(Exception):
    """Raised from the progress callback to end `train_ppo` once the timed iterations are in.

    The run's end (a held-out evaluation, writing the fp32 policy, plotting with matplotlib) is not what
    is measured, and matplotlib may be missing on a GPU machine.
    """


def ppo_split(context: Context) -> dict[str, Any]:
    """One PPO iteration's time in generation, scoring, no-grad passes and optimisation, as in `bench/ppo.py`."""
    from bench.ppo import PHASES, write_prompts
    from training.ppo import PPOConfig, train_ppo
    from training.reward_model import load_backbone, save_reward_model

    profile = context.profile
    built = context.workspace.model(profile.model)
    work = context.workspace.scratch("ppo")
    model, tokenizer = load_backbone(built.path, dtype=torch.bfloat16)
    save_reward_model(model, tokenizer, work / "reward", mean=0.0, std=1.0)
    del model
    log: list[dict[str, float]] = []

    def progress(iteration: int, total: int, entry: dict[str, float]) -> None:
        log.append(entry)
        if len(log) >= profile.ppo_iterations:
            raise _Enough

    config = PPOConfig(
        policy=built.path,
        reward_helpfulness=work / "reward",
        reward_safety=None,
        prompts=write_prompts(work / "prompts.jsonl", 2 * profile.ppo_rollout_batch_size),
        output_dir=work / "out",
        iterations=profile.ppo_iterations + 1,
        rollout_batch_size=profile.ppo_rollout_batch_size,
        minibatch_size=profile.ppo_minibatch_size,
        micro_batch_size=profile.ppo_micro_batch_size,
        max_new_tokens=profile.max_new_tokens,
        eval_every=10**6,
        eval_prompts=8,
        checkpoint_every=10**6,
        device=str(context.torch_device),
    )
    with contextlib.suppress(_Enough):
        train_ppo(config, progress=progress)
    timed = log[1:] or log
    seconds = {phase: sum(entry[f"time/{phase}"] for entry in timed) / len(timed) for phase in PHASES}
    total = sum(seconds.values())
    return {
        "model": built.name,
        "rollout_batch_size": profile.ppo_rollout_batch_size,
        "minibatch_size": profile.ppo_minibatch_size,
        "micro_batch_size": profile.ppo_micro_batch_size,
        "max_new_tokens": profile.max_new_tokens,
        "iterations_timed": len(timed),
        "iteration_s": round(total, 3),
        "seconds": {phase: round(value, 3) for phase, value in seconds.items()},
        "shares": {phase: round(value / total, 4) for phase, value in seconds.items()},
        "mean_response_tokens": round(sum(entry["rollout/response_length"] for entry in timed) / len(timed), 1),
    }
