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
import os
import shutil
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from training.data import EncodedPair, bucketed_order, collate, encode_pairs, has_split, load_pairs, read_manifest
from training.evaluate import evaluate_reward_model, score_pairs
from training.reward_model import load_backbone, ranking_loss, rewards, save_reward_model
from training.schedule import cosine_with_warmup, warmup_steps

RESUME_DIR = ".resume"
Progress = Callable[[int, int, dict[str, float]], None]


@dataclass
class RewardTrainingConfig:
    """Everything a run needs; the defaults are the paper's where it gives one."""

    export_dir: Path
    """An export directory: manifest.json plus train (and test) files."""
    backbone: Path
    """A Hugging Face model directory: the policy (decoder) or an encoder such as all-MiniLM-L6-v2."""
    output_dir: Path
    """Where the reward model is written (created complete at the end of the run)."""
    learning_rate: float = 1e-5
    """Peak learning rate (Llama 2: 1e-5; 5e-6 for 70B)."""
    min_lr_ratio: float = 0.1
    """The cosine decay ends at this fraction of the peak."""
    warmup_ratio: float = 0.03
    """Warm-up share of the steps..."""
    min_warmup_steps: int = 5
    """...and its minimum length in steps."""
    batch_size: int = 512
    """Pairs per optimizer step, across all processes (Llama 2: 512)."""
    micro_batch_size: int = 8
    """Pairs per forward pass in one process; gradients accumulate up to batch_size."""
    max_length: int = 512
    """Tokens per (dialogue, reply); longer inputs keep their end."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    epochs: int = 1
    """Passes over the data (Llama 2: one; more overfits)."""
    use_margin: bool = True
    """Use the export's margin column in the loss (off: plain Bradley-Terry loss)."""
    seed: int = 0
    """Fixes the head's initialisation and the data order."""
    checkpoint_every: int = 50
    """Optimizer steps between resumable checkpoints."""
    device: str = "auto"
    """'auto' (cuda if available), 'cpu' or 'cuda'."""
    bf16: bool | None = None
    """Weights in bf16 (default: on GPU only; fp32 on CPU, where bf16 is about 10x slower)."""
    fsdp: bool = False
    """Under torchrun, shard parameters, gradients and optimizer state (FSDP2) instead of replicating them
    (DDP): for models that do not fit one device."""
    stop_after_steps: int | None = None
    """Stop (with a checkpoint) after this many steps: for tests that simulate a killed run."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes recorded with the run (iteration, focus)."""


@dataclass
class _Runtime:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def _runtime(config: RewardTrainingConfig) -> _Runtime:
    if config.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(config.device)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        return _Runtime(rank=rank, world=dist.get_world_size(), device=device)
    return _Runtime(rank=0, world=1, device=device)


def _steps(count: int, config: RewardTrainingConfig) -> int:
    return math.ceil(count / config.batch_size) * config.epochs


def _step_pairs(order: list[int], step: int, config: RewardTrainingConfig, runtime: _Runtime) -> tuple[list[int], int]:
    """This process's pair indices for an optimizer step, and the step's global pair count."""
    per_epoch = math.ceil(len(order) / config.batch_size)
    start = (step % per_epoch) * config.batch_size
    chunk = order[start : start + config.batch_size]
    return chunk[runtime.rank :: runtime.world], len(chunk)


def _full_states(model: Any, optimizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Whole (unsharded) model and optimizer state dicts; a collective call when the model is sharded."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def _save_resume(directory: Path, states: tuple[dict[str, Any], dict[str, Any]], scheduler: Any, step: int,
                 log: list[dict[str, float]]) -> None:  # fmt: skip
    partial = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model_state, optimizer_state = states
    state = {"model": model_state, "optimizer": optimizer_state, "scheduler": scheduler.state_dict()}
    torch.save({**state, "step": step, "log": log}, partial / "state.pt")
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)


def _load_resume(directory: Path, model: Any, optimizer: Any, scheduler: Any) -> tuple[int, list[dict[str, float]]]:
    state = torch.load(directory / "state.pt", map_location="cpu", weights_only=False)
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, state["model"], options=options)
    set_optimizer_state_dict(model, optimizer, state["optimizer"], options=options)
    scheduler.load_state_dict(state["scheduler"])
    return state["step"], state["log"]


def _shard(model: PreTrainedModel, runtime: _Runtime) -> None:
    """FSDP2: each transformer block is its own shard unit, then the whole model."""
    mesh = init_device_mesh(runtime.device.type, (runtime.world,))
    blocks = [m for m in model.modules() if type(m).__name__.endswith(("DecoderLayer", "Layer", "Block"))]
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def train_reward_model(config: RewardTrainingConfig, *, progress: Progress | None = None) -> dict[str, Any]:
    """Run (or resume) a training run; returns the metrics also written to `metrics.json`."""
    runtime = _runtime(config)
    manifest = read_manifest(config.export_dir)
    torch.manual_seed(config.seed)
    bf16 = runtime.device.type == "cuda" if config.bf16 is None else config.bf16
    model, tokenizer = load_backbone(config.backbone, dtype=torch.bfloat16 if bf16 else torch.float32)
    model.to(runtime.device)  # type: ignore[arg-type]
    model.train()
    sharded = runtime.world > 1 and config.fsdp
    if sharded:
        _shard(model, runtime)

    pairs = encode_pairs(load_pairs(config.export_dir, "train"), tokenizer, config.max_length)
    order = bucketed_order([p.length for p in pairs], config.micro_batch_size, config.seed)
    total = _steps(len(pairs), config)
    warmup = warmup_steps(total, ratio=config.warmup_ratio, minimum=config.min_warmup_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, total_steps=total, warmup=warmup, floor=config.min_lr_ratio)
    )

    work = config.output_dir.with_name(config.output_dir.name + ".work")
    resume = work / RESUME_DIR
    step, log = 0, list[dict[str, float]]()
    if (resume / "state.pt").exists():
        step, log = _load_resume(resume, model, optimizer, scheduler)

    trained = DistributedDataParallel(model) if runtime.world > 1 and not sharded else model
    pad = tokenizer.pad_token_id
    assert pad is not None
    while step < total:
        mine, global_count = _step_pairs(order, step, config, runtime)
        optimizer.zero_grad(set_to_none=True)
        loss_sum, correct = 0.0, 0
        micro = [mine[i : i + config.micro_batch_size] for i in range(0, len(mine), config.micro_batch_size)]
        for index, indices in enumerate(micro):
            batch = collate([pairs[i] for i in indices], pad)
            last = index == len(micro) - 1
            if sharded:
                model.set_requires_gradient_sync(last)  # type: ignore[operator]
            no_sync = runtime.world > 1 and not sharded and not last
            with trained.no_sync() if no_sync else nullcontext():  # type: ignore[operator]
                scores = rewards(
                    trained,  # type: ignore[arg-type]  # DDP forwards to the wrapped model
                    batch["input_ids"].to(runtime.device),
                    batch["attention_mask"].to(runtime.device),
                )
                n = len(indices)
                chosen, rejected = scores[:n], scores[n:]
                margin = batch["margin"].to(runtime.device) if config.use_margin else torch.zeros_like(chosen)
                # Sum over this process's pairs, scaled so DDP's average over processes gives the global mean.
                loss = ranking_loss(chosen, rejected, margin) * n * runtime.world / global_count
                loss.backward()
            loss_sum += loss.item() * global_count / runtime.world
            correct += int((chosen > rejected).sum().item())
        if runtime.world > 1:
            totals = torch.tensor([loss_sum, float(correct)], device=runtime.device)
            dist.all_reduce(totals)
            loss_sum, correct = totals.tolist()
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
            states = _full_states(model, optimizer)
            if runtime.main:
                _save_resume(resume, states, scheduler, step, log)
        if stopping:
            _barrier(runtime)
            return {"stopped_at_step": step, "total_steps": total}

    metrics: dict[str, Any] = {}
    final = model
    if sharded:
        full_state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if runtime.main:
            final, _ = load_backbone(config.backbone, dtype=torch.bfloat16 if bf16 else torch.float32)
            final.load_state_dict(full_state)
            final.to(runtime.device)  # type: ignore[arg-type]
    if runtime.main:
        metrics = _finish(config, final, tokenizer, pairs, log, manifest, work, total, warmup)
    _barrier(runtime)
    return metrics


def _barrier(runtime: _Runtime) -> None:
    if runtime.world > 1:
        dist.barrier()


def _finish(
    config: RewardTrainingConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[EncodedPair],
    log: list[dict[str, float]],
    manifest: dict[str, Any],
    work: Path,
    total: int,
    warmup: int,
) -> dict[str, Any]:
    """Score statistics, evaluation on the test split, then the model directory, moved into place whole."""
    model.eval()
    chosen, rejected = score_pairs(model, pairs, tokenizer.pad_token_id or 0, config.micro_batch_size * 4)
    all_scores = torch.cat([chosen, rejected])
    mean, std = float(all_scores.mean()), float(all_scores.std())
    staging = work / "model"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_reward_model(model, tokenizer, staging, mean=mean, std=std)
    metrics: dict[str, Any] = {
        "export_id": manifest.get("export_id"),
        "config": {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()},
        "total_steps": total,
        "warmup_steps": warmup,
        "train_pairs": len(pairs),
        "score_mean": mean,
        "score_std": std,
        "train": log[-1] if log else {},
        "log": log,
    }
    if has_split(config.export_dir, "test"):
        focus = (manifest.get("mix") or {}).get("kind") or manifest.get("filters", {}).get("focus") or "helpfulness"
        metrics["eval"] = evaluate_reward_model(
            model, tokenizer, load_pairs(config.export_dir, "test"), staging, config.max_length, log, focus
        )
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    shutil.rmtree(config.output_dir, ignore_errors=True)
    config.output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(config.output_dir)
    shutil.rmtree(work, ignore_errors=True)
    return metrics
