"""vLLM colocated with a policy trainer: rollouts from token ids, and the trainer's new weights loaded in place.

This is the route the RLHF trainers that generate with vLLM take (TRL's colocate mode, verl, OpenRLHF), through
vLLM's documented pieces:

- one `vllm.LLM` per training process, in that process and on its GPU (`distributed_executor_backend=
  "external_launcher"`, tensor parallel size 1: under torchrun every rank has its own engine);
- `worker_extension_cls` names `WeightSyncExtension`, so `LLM.collective_rpc("load_policy_weights", ...)` runs
  `model_runner.model.load_weights(...)` in vLLM's worker: the trainer's tensors go in by name, in place, no file
  and no reload (in-process, so they are passed as they are, on the same GPU);
- sleep mode (`enable_sleep_mode=True`): after each batch of rollouts the engine sleeps at level 2 (weights and
  KV cache freed for training); before the next batch it wakes its weight memory, loads the current weights,
  resets the prefix cache (cached blocks were computed by the old weights), then wakes the KV cache;
- `generation_config="vllm"`: sampling is exactly what each request asks (temperature, top_p), not the
  checkpoint's own generation defaults; every request carries its own seed.

vLLM pins its own torch and is not installed in the CPU environment, so it is imported only when an engine is
built. Unquantized models only (a quantized layer needs vLLM's post-load processing). Not yet run on a GPU: the
tests check, against a stand-in `vllm` module, what this module asks of vLLM.
"""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

VLLM_MISSING = "the vllm rollout engine needs the vllm package (a GPU image with vLLM installed): {reason}"
EXTENSION = f"{__name__}.WeightSyncExtension"
LOAD_METHOD = "load_policy_weights"
BUCKET_BYTES = 512 * 2**20
"""Most bytes of tensors handed to vLLM's worker in one `collective_rpc` call."""

Weights = Callable[[], Iterable[tuple[str, torch.Tensor]]]
"""Produces the current (name, tensor) pairs of the policy, by Hugging Face parameter name."""


class WeightSyncExtension:
    """Mixed into vLLM's worker class (`worker_extension_cls`): loads named tensors into the served model."""

    model_runner: Any
    """Set by vLLM's worker."""

    def load_policy_weights(self, weights: list[tuple[str, torch.Tensor]]) -> int:
        self.model_runner.model.load_weights(weights=weights)
        return len(weights)


class VllmPolicyEngine:
    """One in-process vLLM engine on this process's GPU, starting from the checkpoint directory `checkpoint`."""

    def __init__(
        self,
        checkpoint: str,
        *,
        rank: int,
        eos_token_id: int,
        dtype: str = "bfloat16",
        gpu_memory_utilization: float = 0.3,
        max_model_len: int | None = None,
    ) -> None:
        try:
            import vllm
        except ImportError as error:
            raise RuntimeError(VLLM_MISSING.format(reason=error)) from error
        self._vllm = vllm
        launcher_environment()
        options: dict[str, Any] = {
            "model": checkpoint,
            "tensor_parallel_size": 1,
            "distributed_executor_backend": "external_launcher",
            "enable_sleep_mode": True,
            "worker_extension_cls": EXTENSION,
            "generation_config": "vllm",
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            "seed": rank,
        }
        if max_model_len is not None:
            options["max_model_len"] = max_model_len
        self.llm: Any = vllm.LLM(**options)
        self.eos_token_id = eos_token_id
        self.asleep = False
        self.current = True
        """Whether the engine's weights are the policy's (false after an update, and after a level-2 sleep)."""

    def weights_changed(self) -> None:
        """The policy was updated: load its weights before the next generation."""
        self.current = False

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        seeds: Sequence[int],
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        weights: Weights,
    ) -> list[list[int]]:
        """One batch of all `prompts` (token ids), one seed each; the response token ids, EOS kept when it ended."""
        self._wake(weights)  # also with no prompts: under FSDP, gathering the weights takes every process
        if not prompts:
            return []
        params = [
            self._vllm.SamplingParams(**sampling_params(temperature, top_p, max_new_tokens, seed, self.eos_token_id))
            for seed in seeds
        ]
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(prompt)} for prompt in prompts], sampling_params=params, use_tqdm=False
        )
        self.llm.sleep(level=2)  # training needs the memory; the weights are loaded again before the next batch
        self.asleep, self.current = True, False
        return [response_tokens(output, self.eos_token_id) for output in outputs]

    def _wake(self, weights: Weights) -> None:
        if not self.current:
            if self.asleep:
                self.llm.wake_up(tags=["weights"])
            for bucket in buckets(weights(), BUCKET_BYTES):
                self.llm.collective_rpc(LOAD_METHOD, args=(bucket,))
            self.llm.reset_prefix_cache()
            self.current = True
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False

    def close(self) -> None:
        """Free the engine's GPU memory (dropping the LLM alone does not: it sleeps first)."""
        if self.llm is None:
            return
        if not self.asleep:
            self.llm.sleep(level=2)
        self.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def sampling_params(temperature: float, top_p: float, max_new_tokens: int, seed: int, eos: int) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for one rollout request: token ids out, stop at EOS."""
    return {
        "n": 1,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_new_tokens,
        "seed": seed,
        "stop_token_ids": [eos],
        "detokenize": False,
    }


def response_tokens(output: Any, eos_token_id: int) -> list[int]:
    """The token ids of a `vllm.RequestOutput`'s completion, ending in EOS when it stopped there."""
    completion = output.outputs[0]
    tokens = list(completion.token_ids)
    if completion.finish_reason == "stop" and (not tokens or tokens[-1] != eos_token_id):
        tokens.append(eos_token_id)
    return tokens


def buckets(weights: Iterable[tuple[str, torch.Tensor]], limit: int) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """The (name, tensor) pairs in lists of at most `limit` bytes (a larger tensor goes alone)."""
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, tensor in weights:
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > limit:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor))
        size += nbytes
    if bucket:
        yield bucket


def launcher_environment() -> None:
    """What vLLM's external launcher reads from torchrun, filled in for a single process started without it."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine core in this process
