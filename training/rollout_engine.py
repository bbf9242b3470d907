"""Rollout engines: what PPO and rejection sampling generate with, and how a step's generation is dealt out.

A step's prompts are cut into generation calls of `call_size` prompts (by default each process's share in one
call); call `i` samples under its own seed (`call_seed`; call 0 under the step's seed itself, so one call in one
process draws what `rollout.generate` draws). Under torchrun each process runs its calls (0, W, 2W, ... for rank
0 of W) and every process then holds the whole step's rollout, so the same global batch, seed and `call_size`
give the same rollout on any number of processes.

Two engines (`--rollout-engine`):

- ``transformers``: ``model.generate`` on the policy being trained, in this process (the CPU default). Nothing to
  sync: it samples with the live weights. Under FSDP the processes generate in lock step (`synced_gpus`).
- ``vllm``: vLLM in this process on this process's GPU (`sampler.engines.policy_generation`), colocated with
  training; all of a process's prompts of a step go to vLLM in one batch, each with its own seed, and after each
  update the policy's new weights are loaded into the engine (vLLM's `load_weights` route). Written against
  vLLM's documented API and unit-tested against a stand-in `vllm` module; it has not run on a GPU here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch

from sampler.engines.transformers_engine import seeded_rng
from training.distributed import Runtime, gather_objects
from training.policy import Policy
from training.rollout import Rollout, assemble_rollout, sample_responses

EngineName = Literal["transformers", "vllm"]
ENGINES: tuple[str, ...] = ("transformers", "vllm")
UNKNOWN_ENGINE = "unknown rollout engine {name!r}: expected one of " + ", ".join(ENGINES)


@dataclass(frozen=True)
class Sampling:
    """How responses are drawn (the same for every prompt of a step)."""

    temperature: float
    top_p: float
    max_new_tokens: int


@dataclass(frozen=True)
class GenerationCall:
    """Prompts (token ids, in the policy's chat template) sampled together under one seed."""

    prompts: list[list[int]]
    seed: int


class RolloutEngine(Protocol):
    """What policy training generates with."""

    lockstep: bool
    """Every process must make as many sampling calls as the others (the model is sharded across them)."""

    def sample(self, calls: Sequence[GenerationCall], sampling: Sampling) -> list[torch.Tensor]:
        """Each call's responses on the CPU, (its prompts, longest response), pad after the first EOS."""
        ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """The policy was updated: generate with `model`'s weights from now on."""
        ...

    def close(self) -> None:
        """Free what the engine holds (GPU memory) once no more sampling is needed."""
        ...


class TransformersRolloutEngine:
    """`model.generate` on the live policy, one call at a time, each under its own private RNG."""

    def __init__(self, policy: Policy, *, sharded: bool = False) -> None:
        self.policy, self.lockstep = policy, sharded

    def sample(self, calls: Sequence[GenerationCall], sampling: Sampling) -> list[torch.Tensor]:
        device = next(self.policy.model.parameters()).device
        responses = []
        for call in calls:
            with seeded_rng(call.seed, device):
                responses.append(
                    sample_responses(
                        self.policy,
                        call.prompts,
                        temperature=sampling.temperature,
                        top_p=sampling.top_p,
                        max_new_tokens=sampling.max_new_tokens,
                        synced=self.lockstep,
                    )
                )
        return responses

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Nothing to do: the engine samples with the trained module itself."""

    def close(self) -> None:
        """Nothing held beyond the policy itself."""


class VllmRolloutEngine:
    """vLLM colocated with the trainer (see `sampler.engines.policy_generation.VllmPolicyEngine`)."""

    lockstep = False

    def __init__(self, engine: Any, policy: Policy) -> None:
        self.engine, self.policy = engine, policy
        self.source: torch.nn.Module = policy.model
        """The module whose weights the engine loads when it next needs them."""

    def sample(self, calls: Sequence[GenerationCall], sampling: Sampling) -> list[torch.Tensor]:
        prompts = [prompt for call in calls for prompt in call.prompts]
        seeds = [request_seed(call.seed, row) for call in calls for row in range(len(call.prompts))]
        tokens = self.engine.generate(
            prompts,
            seeds,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens,
            weights=lambda: full_parameters(self.source),
        )
        responses, first = [], 0
        for call in calls:
            responses.append(padded(tokens[first : first + len(call.prompts)], self.policy.pad_token_id))
            first += len(call.prompts)
        return responses

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.source = model
        self.engine.weights_changed()

    def close(self) -> None:
        self.engine.close()


def make_engine(
    name: str,
    policy: Policy,
    runtime: Runtime,
    *,
    checkpoint: str,
    sharded: bool,
    dtype: torch.dtype,
    gpu_memory_utilization: float,
) -> RolloutEngine:
    """The engine `name` for `policy`, whose starting weights are in the directory `checkpoint`."""
    if name == "transformers":
        return TransformersRolloutEngine(policy, sharded=sharded)
    if name == "vllm":
        from sampler.engines.policy_generation import VllmPolicyEngine

        engine = VllmPolicyEngine(
            checkpoint,
            rank=runtime.rank,
            eos_token_id=policy.eos_token_id,
            dtype="bfloat16" if dtype == torch.bfloat16 else "float32",
            gpu_memory_utilization=gpu_memory_utilization,
        )
        return VllmRolloutEngine(engine, policy)
    raise ValueError(UNKNOWN_ENGINE.format(name=name))


def call_seed(seed: int, index: int) -> int:
    """The seed of a step's generation call `index`: the step's own seed for the first, mixed for the others."""
    if index == 0:
        return seed
    return (seed * 6364136223846793005 + index * 1442695040888963407) % 2**63


def request_seed(seed: int, row: int) -> int:
    """The seed of one prompt of a call, for an engine that seeds each request (vLLM)."""
    return (seed * 1_000_003 + row) % 2**63


def generation_calls(prompts: Sequence[list[int]], seed: int, call_size: int) -> list[GenerationCall]:
    return [
        GenerationCall(list(prompts[start : start + call_size]), call_seed(seed, index))
        for index, start in enumerate(range(0, len(prompts), call_size))
    ]


def distributed_rollout(
    engine: RolloutEngine,
    policy: Policy,
    prompts: Sequence[list[int]],
    sampling: Sampling,
    *,
    seed: int,
    call_size: int | None,
    runtime: Runtime,
) -> Rollout:
    """The whole rollout of `prompts`, each process sampling its calls; every process gets all of it."""
    size = call_size or math.ceil(len(prompts) / runtime.world)
    calls = generation_calls(prompts, seed, size)
    mine = list(range(runtime.rank, len(calls), runtime.world))
    responses = engine.sample([calls[index] for index in mine], sampling)
    if engine.lockstep:  # as many calls as the busiest process, the extra ones thrown away
        engine.sample([calls[0]] * (math.ceil(len(calls) / runtime.world) - len(mine)), sampling)
    by_call: dict[int, torch.Tensor] = {}
    for indices, parts in gather_objects((mine, responses), runtime):
        by_call.update(zip(indices, parts, strict=True))
    return assemble_rollout(policy, prompts, [by_call[index] for index in range(len(calls))])


def padded(rows: Sequence[Sequence[int]], pad_token_id: int) -> torch.Tensor:
    """Token lists as one right-padded (rows, longest) tensor."""
    width = max([len(row) for row in rows] + [1])
    tensor = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    for index, row in enumerate(rows):
        tensor[index, : len(row)] = torch.tensor(list(row), dtype=torch.long)
    return tensor


def full_parameters(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, whole tensor) for each parameter, by its Hugging Face name; a sharded (FSDP2) parameter is gathered
    first, a collective call that every process makes in the same order."""
    for name, parameter in model.named_parameters():
        tensor = parameter.detach()
        full_tensor = getattr(tensor, "full_tensor", None)  # a DTensor's shards gathered
        yield name, full_tensor() if callable(full_tensor) else tensor
