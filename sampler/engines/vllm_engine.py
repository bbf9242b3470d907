"""In-process vLLM for GPU sampler workers (the GPU image installs vLLM; this module imports it lazily).

vLLM pins its own torch, so it is never installed in the CPU environment: importing this module
there is fine, and building the engine says clearly that vLLM is missing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from sampler.engines.base import CHECKPOINT_LOAD_FAILED, Engine, EngineError, GenerationRequest, GenerationResult

VLLM_MISSING = "the vllm engine needs the vllm package, which only the GPU sampler image installs: {reason}"


class VllmEngine(Engine):
    """Generates with `vllm.LLM.chat`, one call per checkpoint with every request for it at once.

    vLLM schedules the whole list with continuous batching, so there is no batch size to tune here.
    One model is kept on the GPU at a time by default (`max_loaded_models`): a 7B model and its KV
    cache fill most of a card. Each request carries its own seed in its SamplingParams.
    """

    def __init__(
        self,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        dtype: str = "bfloat16",
        max_model_len: int | None = None,
        max_loaded_models: int = 1,
    ) -> None:
        try:
            import vllm
        except ImportError as error:
            raise EngineError(VLLM_MISSING.format(reason=error)) from error
        self._vllm = vllm
        self.llm_options: dict[str, Any] = {
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "dtype": dtype,
        }
        if max_model_len is not None:
            self.llm_options["max_model_len"] = max_model_len
        self.max_loaded_models = max_loaded_models
        self._models: OrderedDict[str, Any] = OrderedDict()

    def _llm(self, checkpoint: str) -> Any:
        if checkpoint in self._models:
            self._models.move_to_end(checkpoint)
            return self._models[checkpoint]
        while len(self._models) >= self.max_loaded_models:
            self._models.popitem(last=False)  # vLLM frees the GPU memory when the LLM is collected
        try:
            llm = self._vllm.LLM(model=checkpoint, **self.llm_options)
        except Exception as error:  # vLLM raises many kinds; the batch needs the reason, the worker must live on
            raise EngineError(CHECKPOINT_LOAD_FAILED.format(checkpoint=checkpoint, reason=error)) from error
        self._models[checkpoint] = llm
        return llm

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        by_checkpoint: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            by_checkpoint.setdefault(request.checkpoint, []).append(index)
        for checkpoint, indices in by_checkpoint.items():
            llm = self._llm(checkpoint)
            started = time.perf_counter()
            outputs = llm.chat(
                [[dict(message) for message in requests[i].messages] for i in indices],
                sampling_params=[self._vllm.SamplingParams(**sampling_params(requests[i])) for i in indices],
                use_tqdm=False,
            )
            latency_ms = (time.perf_counter() - started) * 1000
            for index, output in zip(indices, outputs, strict=True):
                results[index] = result_from_output(output, latency_ms=latency_ms)
        return [result for result in results if result is not None]


def sampling_params(request: GenerationRequest) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for a request (temperature 0 is greedy in vLLM too)."""
    return {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_new_tokens,
        "seed": request.seed,
        "n": 1,
    }


def result_from_output(output: Any, *, latency_ms: float) -> GenerationResult:
    """A GenerationResult from a `vllm.RequestOutput` (its first completion)."""
    completion = output.outputs[0]
    return GenerationResult(
        text=completion.text,
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=len(completion.token_ids),
        finish_reason="length" if completion.finish_reason == "length" else "stop",
        latency_ms=latency_ms,
    )
