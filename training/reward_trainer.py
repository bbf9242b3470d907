"""Train a reward model on an export, the Llama 2 way (section 3.2.2), on one device or many.

One epoch over the train split; AdamW; peak LR 1e-5 with a 3% (at least 5 steps) warm-up and cosine
decay to 10% of peak; the binary ranking loss with margin; gradient clipping; `batch_size` pairs per
optimizer step reached by gradient accumulation over micro-batches (chosen and rejected of a
micro-batch in one forward pass). Under `torchrun` the pairs of each step are split across
processes and DDP averages the gradients, so the result matches one process on the same global
batch. A run writes a resumable checkpoint every `checkpoint_every` steps (weights, optimizer,
scheduler, step; the data order is fixed by the seed) and, when done, the model directory, which
appears complete or not at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sampler.engines.reward import rewards
from training.checkpointing import RunFiles, config_record, step_state
from training.cli import option
from training.data import EncodedPair, bucketed_order, collate, encode_pairs, has_split, load_pairs, read_manifest
from training.distributed import Runtime, barrier, full_model_state, full_states, load_states, shard
from training.distributed import runtime as distributed_runtime
from training.evaluate import evaluate_reward_model, score_pairs
from training.reward_model import load_backbone, ranking_loss, save_reward_model
from training.schedule import cosine_with_warmup, warmup_steps

Progress = Callable[[int, int, dict[str, float]], None]


@dataclass
class RewardTrainingConfig:
    """Everything a run needs; the defaults are the paper's where it gives one. Fields with `option`
    metadata are the options of `python -m training.reward_cli`."""

    export_dir: Path = field(metadata=option("Export directory (manifest.json + train/test files).", flag="--export"))
    backbone: Path = field(metadata=option("Hugging Face model directory to start from."))
    """The policy (decoder) or an encoder such as all-MiniLM-L6-v2."""
    output_dir: Path = field(metadata=option("Where to write the reward model directory.", flag="--output"))
    """Created complete at the end of the run."""
    learning_rate: float = field(default=1e-5, metadata=option("Peak learning rate."))
    """Llama 2: 1e-5; 5e-6 for 70B."""
    min_lr_ratio: float = field(default=0.1, metadata=option("Cosine decay floor, as a fraction of the peak."))
    warmup_ratio: float = field(default=0.03, metadata=option("Warm-up share of the steps."))
    min_warmup_steps: int = field(default=5, metadata=option("Shortest warm-up, in steps."))
    batch_size: int = field(default=512, metadata=option("Pairs per optimizer step, across all processes."))
    """Llama 2: 512."""
    micro_batch_size: int = field(default=8, metadata=option("Pairs per forward pass in one process."))
    """Gradients accumulate up to batch_size."""
    max_length: int = field(default=512, metadata=option("Tokens per (dialogue, reply); the end is kept."))
    weight_decay: float = field(default=0.0, metadata=option("AdamW weight decay."))
    max_grad_norm: float = field(default=1.0, metadata=option("Gradient clipping norm."))
    epochs: int = field(default=1, metadata=option("Passes over the train split (Llama 2: 1)."))
    """More than one overfits."""
    use_margin: bool = field(default=True, metadata=option("Ignore the export's margin column.", flag="--no-margin"))
    """Use the export's margin column in the loss (off: plain Bradley-Terry loss)."""
    seed: int = field(default=0, metadata=option("Head initialisation and data order."))
    checkpoint_every: int = field(default=50, metadata=option("Steps between resumable checkpoints."))
    device: str = field(default="auto", metadata=option("auto, cpu or cuda."))
    """'auto' is cuda if available."""
    fsdp: bool = field(default=False, metadata=option("Under torchrun: shard the model (FSDP2) instead of DDP."))
    """Under torchrun, shard parameters, gradients and optimizer state (FSDP2) instead of replicating them
    (DDP): for models that do not fit one device."""
    bf16: bool | None = field(default=None, metadata=option("bf16 weights (auto: on GPU only)."))
    """Weights in bf16 (default: on GPU only; fp32 on CPU, where bf16 runs much slower)."""
    stop_after_steps: int | None = None
    """Stop (with a checkpoint) after this many steps: for tests that simulate a killed run."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes recorded with the run (iteration, focus)."""


def _steps(count: int, config: RewardTrainingConfig) -> int:
    return math.ceil(count / config.batch_size) * config.epochs


def _step_pairs(order: list[int], step: int, config: RewardTrainingConfig, runtime: Runtime) -> tuple[list[int], int]:
    """This process's pair indices for an optimizer step, and the step's global pair count."""
    per_epoch = math.ceil(len(order) / config.batch_size)
    start = (step % per_epoch) * config.batch_size
    chunk = order[start : start + config.batch_size]
    return chunk[runtime.rank :: runtime.world], len(chunk)


def _load_state(
    state: dict[str, Any], model: Any, optimizer: Any, scheduler: Any
) -> tuple[int, list[dict[str, float]]]:
    """Put a saved state back into the (possibly sharded) model, its optimizer and scheduler; the step and log."""
    load_states(model, optimizer, state["model"], state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"], state["log"]


def train_reward_model(config: RewardTrainingConfig, *, progress: Progress | None = None) -> dict[str, Any]:
    """Run (or resume) a training run; returns the metrics also written to `metrics.json`."""
    runtime = distributed_runtime(config.device)
    manifest = read_manifest(config.export_dir)
    torch.manual_seed(config.seed)
    bf16 = runtime.device.type == "cuda" if config.bf16 is None else config.bf16
    model, tokenizer = load_backbone(config.backbone, dtype=torch.bfloat16 if bf16 else torch.float32)
    model.to(runtime.device)  # type: ignore[arg-type]
    model.train()
    sharded = runtime.world > 1 and config.fsdp
    if sharded:
        shard(model, runtime)

    pairs = encode_pairs(load_pairs(config.export_dir, "train"), tokenizer, config.max_length)
    order = bucketed_order([p.length for p in pairs], config.micro_batch_size, config.seed)
    total = _steps(len(pairs), config)
    warmup = warmup_steps(total, ratio=config.warmup_ratio, minimum=config.min_warmup_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, total_steps=total, warmup=warmup, floor=config.min_lr_ratio)
    )

    files = RunFiles(config.output_dir)
    step, log = 0, list[dict[str, float]]()
    saved = files.load_state()
    if saved is not None:
        step, log = _load_state(saved, model, optimizer, scheduler)

    trained = DistributedDataParallel(model) if runtime.world > 1 and not sharded else model
    pad = tokenizer.pad_token_id
    assert pad is not None
    while step < total:
        mine, global_count = _step_pairs(order, step, config, runtime)
        size = config.micro_batch_size
        micro = [collate([pairs[i] for i in mine[j : j + size]], pad) for j in range(0, len(mine), size)]
        optimizer.zero_grad(set_to_none=True)
        loss_sum, correct = _accumulate(config, runtime, model, trained, micro, global_count)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        step += 1
        entry = {
            "step": step,
            "train/loss": loss_sum / global_count,
            "train/accuracy": correct / global_count,
            "train/grad_norm": float(grad_norm),
            "train/lr": optimizer.param_groups[0]["lr"],
        }
        log.append(entry)
        if progress is not None and runtime.main:
            progress(step, total, entry)
        stopping = config.stop_after_steps is not None and step >= config.stop_after_steps and step < total
        if step % config.checkpoint_every == 0 or stopping:
            model_state, optimizer_state = full_states(model, optimizer)
            if runtime.main:
                files.save_state(step_state(model_state, optimizer_state, scheduler, step, log))
        if stopping:
            barrier(runtime)
            return {"stopped_at_step": step, "total_steps": total}

    metrics: dict[str, Any] = {}
    final = _unsharded(model, config, runtime, bf16) if sharded else model
    if runtime.main:
        summary = {"export_id": manifest.get("export_id"), "total_steps": total, "warmup_steps": warmup}
        metrics = files.finish(partial(_write_model, config, final, tokenizer, pairs, log, manifest, summary))
    barrier(runtime)
    return metrics


def _accumulate(
    config: RewardTrainingConfig,
    runtime: Runtime,
    model: PreTrainedModel,
    trained: Any,
    micro: Sequence[dict[str, torch.Tensor]],
    global_count: int,
) -> tuple[float, float]:
    """Forward and backward over one step's micro-batches, gradients synchronised on the last one only;
    the step's summed loss and correct count over all processes."""
    sharded = runtime.world > 1 and config.fsdp
    loss_sum, correct = 0.0, 0.0
    for index, batch in enumerate(micro):
        last = index == len(micro) - 1
        if sharded:
            model.set_requires_gradient_sync(last)  # type: ignore[operator]
        no_sync = runtime.world > 1 and not sharded and not last
        with trained.no_sync() if no_sync else nullcontext():
            scores = rewards(
                trained,  # DDP forwards to the wrapped model
                batch["input_ids"].to(runtime.device),
                batch["attention_mask"].to(runtime.device),
            )
            n = len(batch["margin"])
            chosen, rejected = scores[:n], scores[n:]
            margin = batch["margin"].to(runtime.device) if config.use_margin else torch.zeros_like(chosen)
            # Sum over this process's pairs, scaled so DDP's average over processes gives the global mean.
            loss = ranking_loss(chosen, rejected, margin) * n * runtime.world / global_count
            loss.backward()
        loss_sum += loss.item() * global_count / runtime.world
        correct += int((chosen > rejected).sum().item())
    if runtime.world > 1:
        totals = torch.tensor([loss_sum, correct], device=runtime.device)
        dist.all_reduce(totals)
        loss_sum, correct = totals.tolist()
    return loss_sum, correct


def _unsharded(model: Any, config: RewardTrainingConfig, runtime: Runtime, bf16: bool) -> Any:
    """The trained weights gathered (a collective call) into an ordinary model on the main process."""
    full_state = full_model_state(model)
    if not runtime.main:
        return model
    final, _ = load_backbone(config.backbone, dtype=torch.bfloat16 if bf16 else torch.float32)
    final.load_state_dict(full_state)
    final.to(runtime.device)  # type: ignore[arg-type]
    return final


def _write_model(
    config: RewardTrainingConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[EncodedPair],
    log: list[dict[str, float]],
    manifest: dict[str, Any],
    summary: dict[str, Any],
    directory: Path,
) -> dict[str, Any]:
    """The reward model directory: the model with its score statistics, the test-split evaluation, metrics.json."""
    model.eval()
    chosen, rejected = score_pairs(model, pairs, tokenizer.pad_token_id or 0, config.micro_batch_size * 4)
    all_scores = torch.cat([chosen, rejected])
    mean, std = float(all_scores.mean()), float(all_scores.std())
    save_reward_model(model, tokenizer, directory, mean=mean, std=std)
    metrics: dict[str, Any] = {
        "export_id": summary["export_id"],
        "config": config_record(config),
        "total_steps": summary["total_steps"],
        "warmup_steps": summary["warmup_steps"],
        "train_pairs": len(pairs),
        "score_mean": mean,
        "score_std": std,
        "train": log[-1] if log else {},
        "log": log,
    }
    if has_split(config.export_dir, "test"):
        focus = (manifest.get("mix") or {}).get("kind") or manifest.get("filters", {}).get("focus") or "helpfulness"
        metrics["eval"] = evaluate_reward_model(
            model, tokenizer, load_pairs(config.export_dir, "test"), directory, config.max_length, log, focus
        )
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
