"""Supervised fine-tuning with the loss on response tokens only: rejection sampling's second half.

AdamW with a cosine schedule after a short warm-up, `batch_size` examples per optimizer step (accumulated over
micro-batches), the loss a mean over all the step's response tokens. Under torchrun each process takes every
W-th example of a step; DDP (or FSDP2 with `fsdp`) averages the gradients, and the losses are scaled so that the
average is the step's token mean, as in one process. A resumable checkpoint (whole state dicts) is written every
`checkpoint_every` steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from training.checkpointing import RunFiles, step_state
from training.data import bucketed_order
from training.distributed import Runtime, all_sum, full_states, load_states, micro_batch_count, micro_batches
from training.policy import mixed_precision
from training.schedule import cosine_with_warmup, warmup_steps

IGNORE_INDEX = -100
"""The label of a token the loss skips (prompt and padding)."""
Example = tuple[list[int], int]
"""Token ids of (prompt, reply) and the prompt's length."""
Progress = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class FineTuning:
    """The settings of a fine-tuning run (RejectionSamplingConfig's)."""

    learning_rate: float
    weight_decay: float
    max_grad_norm: float
    epochs: int
    batch_size: int
    micro_batch_size: int
    seed: int
    checkpoint_every: int
    stop_after_steps: int | None


@dataclass(frozen=True)
class FineTuned:
    step: int
    total: int
    log: list[dict[str, float]]
    stopped: bool
    """`stop_after_steps` stopped the run (with a checkpoint) before `total`."""


def sft_batch(examples: Sequence[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids and attention_mask, and labels that are IGNORE_INDEX on prompt and padding."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, (ids, prompt_length) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        labels[row, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def response_loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over the labelled (response) tokens, and their count."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss, int((targets != IGNORE_INDEX).sum())


def response_tokens(example: Example) -> int:
    """How many tokens of an example the loss counts (what sft_batch labels)."""
    ids, prompt_length = example
    return max(0, len(ids) - prompt_length)


def fine_tune(
    model: Any,
    examples: Sequence[Example],
    settings: FineTuning,
    *,
    pad_token_id: int,
    files: RunFiles,
    runtime: Runtime,
    sharded: bool,
    dtype: torch.dtype,
    progress: Progress | None = None,
) -> FineTuned:
    """Fine-tune `model` (sharded already when `sharded`) on `examples`, resuming from what `files` holds."""
    order = bucketed_order([len(ids) for ids, _ in examples], settings.micro_batch_size, settings.seed)
    per_epoch = math.ceil(len(examples) / settings.batch_size)
    total = per_epoch * settings.epochs
    warmup = warmup_steps(total, minimum=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, total_steps=total, warmup=warmup)
    )
    step, log = 0, list[dict[str, float]]()
    saved = files.load_state()
    if saved is not None:
        load_states(model, optimizer, saved["model"], saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        step, log = saved["step"], saved["log"]
    trained = DistributedDataParallel(model) if runtime.distributed and not sharded else model
    while step < total:
        start = (step % per_epoch) * settings.batch_size
        chunk = order[start : start + settings.batch_size]
        count = micro_batch_count(len(chunk), settings.micro_batch_size, runtime)
        mine = micro_batches(chunk[runtime.rank :: runtime.world], settings.micro_batch_size, count, chunk[0])
        batches = [
            ({k: v.to(runtime.device) for k, v in sft_batch([examples[i] for i in m], pad_token_id).items()}, weight)
            for m, weight in mine
        ]
        optimizer.zero_grad(set_to_none=True)
        tokens = sum(response_tokens(examples[i]) for i in chunk)
        loss = _accumulate(model, trained, batches, tokens, runtime, sharded, dtype)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        step += 1
        entry = {
            "step": step,
            "sft/loss": loss,
            "sft/grad_norm": float(grad_norm),
            "sft/lr": optimizer.param_groups[0]["lr"],
        }
        log.append(entry)
        if progress is not None and runtime.main:
            progress(step, total, entry)
        stopping = settings.stop_after_steps is not None and step >= settings.stop_after_steps and step < total
        if step % settings.checkpoint_every == 0 or stopping:
            model_state, optimizer_state = full_states(model, optimizer)
            if runtime.main:
                files.save_state(step_state(model_state, optimizer_state, scheduler, step, log))
        if stopping:
            return FineTuned(step, total, log, stopped=True)
    return FineTuned(step, total, log, stopped=False)


def _accumulate(
    model: Any,
    trained: Any,
    batches: Sequence[tuple[dict[str, torch.Tensor], float]],
    tokens: int,
    runtime: Runtime,
    sharded: bool,
    dtype: torch.dtype,
) -> float:
    """Forward and backward over this process's micro-batches of a step (`tokens`: the step's response tokens over
    all processes), gradients averaged over processes on the last one only; returns the step's loss."""
    loss_sum = 0.0
    for index, (batch, weight) in enumerate(batches):
        last = index == len(batches) - 1
        if sharded:
            model.set_requires_gradient_sync(last)
        with trained.no_sync() if runtime.distributed and not sharded and not last else nullcontext():
            with mixed_precision(runtime.device, dtype):
                loss, _ = response_loss_sum(trained, batch)
            # A sum over this process's tokens; DDP's average over processes then gives the step's token mean.
            (loss * (weight * runtime.world) / max(tokens, 1)).backward()
        loss_sum += loss.item() * weight
    return all_sum([loss_sum], runtime)[0] / max(tokens, 1)
