"""Data-parallel plumbing shared by the trainers: the process's place in a `torchrun` job, FSDP2 sharding, whole
state dicts of sharded models, and the gathers that let every process see the whole step.

Outside `torchrun` (no WORLD_SIZE, or 1) everything here is a pass-through: one process, rank 0, no collectives.
Under `torchrun` the process group is NCCL on GPU and gloo on CPU; each process drives the device of its
LOCAL_RANK. Multi-node jobs are the same code under `torchrun --nnodes N --rdzv_backend c10d --rdzv_endpoint
HOST:PORT` (every node must see the same output directory: rank 0 writes it, every rank resumes from it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

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

from training.policy import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    """Where this process stands: its rank among `world` processes and the device it drives."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def runtime(device: str) -> Runtime:
    """This process's Runtime; under torchrun (WORLD_SIZE > 1) it joins the process group first."""
    resolved = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Runtime(rank=0, world=1, device=resolved)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    if resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(resolved)
    return Runtime(rank=dist.get_rank(), world=dist.get_world_size(), device=resolved)


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def shard(model: torch.nn.Module, runtime: Runtime, *, root: torch.nn.Module | None = None) -> None:
    """FSDP2: each transformer block of `model` is its own shard unit, then `root` (default: the model itself),
    which holds the remaining parameters (embeddings, final norm, heads) and must be what forward is called on."""
    mesh = init_device_mesh(runtime.device.type, (runtime.world,))
    blocks = [m for m in model.modules() if type(m).__name__.endswith(("DecoderLayer", "Layer", "Block"))]
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(root if root is not None else model, mesh=mesh)


def full_states(model: Any, optimizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Whole (unsharded) model and optimizer state dicts on the CPU; a collective call when the model is sharded."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def full_model_state(model: Any) -> dict[str, Any]:
    """The whole model state dict on the CPU (on the main process; collective when the model is sharded)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_states(model: Any, optimizer: Any, model_state: dict[str, Any], optimizer_state: dict[str, Any]) -> None:
    """Put whole state dicts (as `full_states` made them) back into a possibly sharded model and its optimizer."""
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_state, options=options)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)


def gather_objects(value: T, runtime: Runtime) -> list[T]:
    """Every process's `value`, in rank order (picklable values; tensors travel on the CPU)."""
    if not runtime.distributed:
        return [value]
    gathered: list[Any] = [None] * runtime.world
    dist.all_gather_object(gathered, value)
    return gathered


def gather_rows(rows: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """The processes' equal-shaped row blocks stacked in rank order (every process gets the whole)."""
    if not runtime.distributed:
        return rows
    parts = [torch.empty_like(rows) for _ in range(runtime.world)]
    dist.all_gather(parts, rows.contiguous())
    return torch.cat(parts)


def all_sum(values: Sequence[float], runtime: Runtime) -> list[float]:
    """Element-wise sums of `values` over the processes."""
    if not runtime.distributed:
        return list(values)
    totals = torch.tensor(list(values), dtype=torch.float64, device=runtime.device)
    dist.all_reduce(totals)
    return [float(total) for total in totals.tolist()]


def contiguous_share(count: int, runtime: Runtime) -> range:
    """This process's block of `count` items when they are dealt out contiguously (the first blocks one longer)."""
    size, extra = divmod(count, runtime.world)
    start = runtime.rank * size + min(runtime.rank, extra)
    return range(start, start + size + (1 if runtime.rank < extra else 0))


def micro_batches(items: Sequence[T], size: int, count: int, filler: T) -> list[tuple[list[T], float]]:
    """`items` cut into micro-batches of at most `size`, each with its weight (1), then fillers (`[filler]`, weight
    0) up to `count`: every process must run as many forward and backward passes as the others, for DDP's and
    FSDP's collectives, even one whose share of a step is smaller or empty."""
    batches: list[tuple[list[T], float]] = [
        (list(items[start : start + size]), 1.0) for start in range(0, len(items), size)
    ]
    batches += [([filler], 0.0)] * (count - len(batches))
    return batches


def micro_batch_count(global_count: int, size: int, runtime: Runtime) -> int:
    """How many micro-batches of `size` the process with the most of `global_count` items (dealt out as evenly as
    possible) needs: every process runs that many."""
    return max(1, math.ceil(math.ceil(global_count / runtime.world) / size))
