"""In-process vLLM for GPU sampler workers (the GPU image installs vLLM; this module imports it lazily).

vLLM pins its own torch, so it is never installed in the CPU environment: importing this module
there is fine, and building the engine says clearly that vLLM is missing.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from preference_format import FinishReason, Reproducibility
from sampler.engines.base import (
    CHECKPOINT_LOAD_FAILED,
    Engine,
    EngineError,
    GenerationRequest,
    GenerationResult,
    Provenance,
)

VLLM_MISSING = "the vllm engine needs the vllm package, which only the GPU sampler image installs: {reason}"


class VllmEngine(Engine):
    """Generates with `vllm.LLM.chat`, one call per checkpoint with every request for it at once.

    vLLM schedules the whole list with continuous batching, so there is no batch size to tune here; the
    checkpoint that is awake goes first. Switching checkpoints uses vLLM's documented mechanisms, because
    dropping an `LLM` does not give its GPU memory back (vLLM issues #1908, #3281, #21073):

    - Up to `max_loaded_models` engines stay built. Only one is awake; the others sleep at level 1 (weights
      offloaded to CPU RAM, KV cache discarded), so switching back is a wake-up, not a reload. Each sleeping
      model needs its weights' size in host RAM.
    - Past that, the least recently used engine is shut down explicitly (`LLM.shutdown()` where the release has
      it, else its engine core's `shutdown()`, which ends the engine process and frees the device).

    The engine core runs in its own process (vLLM's default): that is why the GPU worker runs Celery's solo
    pool, whose task process may have children. `release_device` puts the awake engine to sleep so that the
    reward model of uncertainty selection gets the GPU. `reproducible=True` sets VLLM_BATCH_INVARIANT=1 (vLLM's
    reproducibility guide; needs a recent NVIDIA GPU) so that a seed fixes its text whatever the batch holds;
    otherwise vLLM does not reproduce texts, and the results' provenance says so.
    """

    def __init__(
        self,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        dtype: str = "bfloat16",
        max_model_len: int | None = None,
        max_loaded_models: int = 2,
        reproducible: bool = False,
    ) -> None:
        if max_loaded_models < 1:
            raise ValueError(f"max_loaded_models must be at least 1, got {max_loaded_models}")
        if reproducible:
            os.environ["VLLM_BATCH_INVARIANT"] = "1"  # read when the engine is built
        try:
            import vllm
        except ImportError as error:
            raise EngineError(VLLM_MISSING.format(reason=error)) from error
        self._vllm = vllm
        self.llm_options: dict[str, Any] = {
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "dtype": dtype,
            "enable_sleep_mode": max_loaded_models > 1,
        }
        if max_model_len is not None:
            self.llm_options["max_model_len"] = max_model_len
        self.max_loaded_models = max_loaded_models
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._awake: str | None = None
        self._provenance = Provenance(
            engine="vllm",
            engine_version=f"vllm {getattr(vllm, '__version__', 'unknown')}",
            device=_device_name(),
            dtype=dtype,
            reproducibility=Reproducibility.REQUEST if reproducible else Reproducibility.NONE,
        )

    @property
    def loaded_checkpoints(self) -> list[str]:
        """Checkpoints with a built engine, least recently used first (the last one may be awake)."""
        return list(self._models)

    def release_device(self) -> None:
        """Put the awake engine to sleep; without sleep mode (one model at a time), shut it down."""
        if self._awake is None:
            return
        if self.llm_options["enable_sleep_mode"]:
            self._models[self._awake].sleep(level=1)
        else:
            _shut_down(self._models.pop(self._awake))
        self._awake = None

    def _llm(self, checkpoint: str) -> Any:
        if self._awake not in (None, checkpoint):
            self.release_device()
        if checkpoint in self._models:
            self._models.move_to_end(checkpoint)
            if self._awake is None:
                self._models[checkpoint].wake_up()
                self._awake = checkpoint
            return self._models[checkpoint]
        while len(self._models) >= self.max_loaded_models:
            _, evicted = self._models.popitem(last=False)
            _shut_down(evicted)
        try:
            llm = self._vllm.LLM(model=checkpoint, **self.llm_options)
        except Exception as error:  # vLLM raises many kinds; the batch needs the reason, the worker must live on
            raise EngineError(CHECKPOINT_LOAD_FAILED.format(checkpoint=checkpoint, reason=error)) from error
        self._models[checkpoint] = llm
        self._awake = checkpoint
        return llm

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        by_checkpoint: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            by_checkpoint.setdefault(request.checkpoint, []).append(index)
        # The awake checkpoint first: it needs no switch.
        order = sorted(by_checkpoint, key=lambda checkpoint: checkpoint != self._awake)
        for checkpoint in order:
            indices = by_checkpoint[checkpoint]
            llm = self._llm(checkpoint)
            started = time.perf_counter()
            outputs = llm.chat(
                [[dict(message) for message in requests[i].messages] for i in indices],
                sampling_params=[self._vllm.SamplingParams(**sampling_params(requests[i])) for i in indices],
                use_tqdm=False,
            )
            latency_ms = (time.perf_counter() - started) * 1000
            for index, output in zip(indices, outputs, strict=True):
                provenance = self._provenance
                if requests[index].seed is None:
                    provenance = replace(provenance, reproducibility=Reproducibility.NONE)
                results[index] = result_from_output(output, latency_ms=latency_ms, provenance=provenance)
        return [result for result in results if result is not None]


def _shut_down(llm: Any) -> None:
    """End an engine so that its GPU memory is freed now, not whenever it is collected."""
    shutdown = getattr(llm, "shutdown", None)
    if shutdown is None:  # releases before LLM.shutdown(): the V1 engine core client has it
        shutdown = llm.llm_engine.engine_core.shutdown
    shutdown()


def _device_name() -> str:
    try:
        import torch
    except ImportError:
        return "cuda"
    return f"cuda:0 {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cuda"


def sampling_params(request: GenerationRequest) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for a request (temperature 0 is greedy in vLLM too)."""
    return {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_new_tokens,
        "seed": request.seed,
        "n": 1,
    }


def result_from_output(output: Any, *, latency_ms: float, provenance: Provenance) -> GenerationResult:
    """A GenerationResult from a `vllm.RequestOutput` (its first completion), its finish reason as vLLM gave it."""
    completion = output.outputs[0]
    return GenerationResult(
        text=completion.text,
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=len(completion.token_ids),
        finish_reason=finish_reason(completion.finish_reason),
        latency_ms=latency_ms,
        provenance=provenance,
    )


def finish_reason(reason: str | None) -> FinishReason:
    """vLLM's finish reason: stop, length or abort; a completion that did not finish (None) counts as aborted."""
    if reason is None:
        return FinishReason.ABORT
    try:
        return FinishReason(reason)
    except ValueError:
        raise EngineError(f"vLLM gave an unknown finish reason {reason!r}") from None
