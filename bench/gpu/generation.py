"""Sampling sections: transformers-engine throughput against the HBM roofline, live-pair latency, vLLM throughput.

The roofline of decoding at batch size B is ``B * HBM bandwidth / weight bytes``: each step must read every
weight once (the embedding table aside) and yields one token per sequence. KV-cache reads and prefill are
left out, so it is an upper bound, and the share of it measures how far generation is from memory-bound.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from typing import Any

import torch

from bench.gpu.models import Built, words
from bench.gpu.runner import Context, NotRun
from bench.sampler import PAIR_TEMPERATURES
from sampler.engines import GenerationRequest
from sampler.engines.transformers_engine import TransformersEngine
from sampler.engines.vllm_engine import VllmEngine

ROOFLINE = "batch_size x HBM bandwidth / bytes of the weights one decoding step reads (embedding table excluded)"


def requests_for(
    built: Built, context: Context, count: int, *, first: int, temperature: float = 1.0
) -> list[GenerationRequest]:
    """``count`` single-turn requests with distinct prompts of ``profile.prompt_tokens`` words, seeds from ``first``."""
    length = context.profile.prompt_tokens
    return [
        GenerationRequest(
            messages=[{"role": "user", "content": words(length, (first + i) * length, built.shape.vocab)}],
            checkpoint=str(built.path),
            temperature=temperature,
            max_new_tokens=context.profile.max_new_tokens,
            seed=first + i,
        )
        for i in range(count)
    ]


def sampling(context: Context) -> dict[str, Any]:
    return _throughput(context, context.workspace.model(context.profile.model))


def sampling_large(context: Context) -> dict[str, Any]:
    """The same on the larger model; its checkpoint is deleted afterwards (no later section needs it)."""
    try:
        return _throughput(context, context.workspace.model(context.profile.large_model))
    finally:
        context.workspace.drop(context.profile.large_model)


def _throughput(context: Context, built: Built) -> dict[str, Any]:
    """Completion tokens per second of one ``generate`` call per batch size, after a warm-up call that loads."""
    engine = TransformersEngine(device=str(context.torch_device), batch_size=max(context.profile.batch_sizes))
    before = torch.cuda.memory_allocated(context.torch_device) if context.cuda else 0
    engine.generate(requests_for(built, context, 1, first=0))
    # What the loaded model holds on the device: twice the bf16 weight bytes would mean it loaded in fp32.
    resident = torch.cuda.memory_allocated(context.torch_device) - before if context.cuda else None
    weight_bytes = built.decode_parameters * engine.dtype.itemsize
    hbm = context.device.hbm_tbps
    runs, skipped = [], []
    for batch_size in context.profile.batch_sizes:
        if context.budget.left() < 10:
            skipped.append(batch_size)
            continue
        engine.batch_size = batch_size  # read per call: one engine (one resident model) serves every batch size
        started = time.perf_counter()
        results = engine.generate(requests_for(built, context, batch_size, first=1))
        wall = time.perf_counter() - started  # generate returns lists: the device is done
        tokens = sum(result.completion_tokens for result in results)
        roofline = batch_size * hbm * 1e12 / weight_bytes if hbm else None
        runs.append(
            {
                "batch_size": batch_size,
                "completion_tokens": tokens,
                "wall_s": round(wall, 4),
                "tokens_per_s": round(tokens / wall, 1),
                "ms_per_step": round(1000 * wall / context.profile.max_new_tokens, 2),
                "roofline_tokens_per_s": round(roofline, 1) if roofline else None,
                "share_of_roofline": round(tokens / wall / roofline, 4) if roofline else None,
            }
        )
    return {
        "model": built.name,
        "engine": "transformers",
        "dtype": str(engine.dtype).removeprefix("torch."),
        "weight_bytes_per_step": weight_bytes,
        "resident_gib": round(resident / 2**30, 3) if resident is not None else None,
        "prompt_tokens": context.profile.prompt_tokens,
        "max_new_tokens": context.profile.max_new_tokens,
        "roofline": ROOFLINE if hbm else "not computed: the device's HBM bandwidth is unknown (GPU_CHECK_HBM_TBPS)",
        "runs": runs,
        "skipped_batch_sizes": skipped,
    }


def live_pair(context: Context) -> dict[str, Any]:
    """An annotator's live pair: two requests (the sampler's two temperatures) for a fresh prompt, model resident.

    The two temperatures make two groups, so the engine generates them one after the other, as it does live.
    """
    built = context.workspace.model(context.profile.model)
    engine = TransformersEngine(device=str(context.torch_device))
    engine.generate(requests_for(built, context, 1, first=0))
    latencies = []
    for repeat in range(context.profile.pair_repeats):
        pair = [
            requests_for(built, context, 1, first=1000 + repeat, temperature=temperature)[0]
            for temperature in PAIR_TEMPERATURES
        ]
        started = time.perf_counter()
        engine.generate(pair)
        latencies.append(1000 * (time.perf_counter() - started))
    return {
        "model": built.name,
        "temperatures": list(PAIR_TEMPERATURES),
        "prompt_tokens": context.profile.prompt_tokens,
        "max_new_tokens": context.profile.max_new_tokens,
        "pairs": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "max_ms": round(max(latencies), 1),
        "latencies_ms": [round(value, 1) for value in latencies],
    }


def vllm_throughput(context: Context) -> dict[str, Any]:
    """vLLM's completion tokens per second on the same model and requests, all in one call (continuous batching)."""
    if importlib.util.find_spec("vllm") is None:
        raise NotRun("vllm is not installed here (it pins its own torch and is far too big to carry as a wheel)")
    if not context.cuda:
        raise NotRun("vLLM needs a GPU")
    built = context.workspace.model(context.profile.model)
    engine = VllmEngine(gpu_memory_utilization=0.5, max_model_len=1024)
    engine.generate(requests_for(built, context, 1, first=0))
    started = time.perf_counter()
    results = engine.generate(requests_for(built, context, context.profile.vllm_requests, first=1))
    wall = time.perf_counter() - started
    tokens = sum(result.completion_tokens for result in results)
    return {
        "model": built.name,
        "engine": "vllm",
        "requests": len(results),
        "max_new_tokens": context.profile.max_new_tokens,
        "completion_tokens": tokens,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
    }
