"""Filling a batch with response pairs: plan the variants, generate, store each pair once."""

from collections.abc import Callable, Sequence

from backend.batches.models import Batch, Comparison, Prompt
from backend.batches.selectors import prompt_context
from backend.batches.services.comparisons import ResponseInput, comparison_create
from backend.checkpoints.models import Checkpoint
from backend.checkpoints.selectors import checkpoint_local_path
from sampler.engines import Engine, GenerationRequest, GenerationResult
from sampler.planning import plan_pairs, response_seed


def prompt_messages(prompt: Prompt) -> list[dict[str, str]]:
    """The chat the model answers: the dialogue so far, then the prompt as the user's turn."""
    turns = [{"role": turn.role, "content": turn.content} for turn in prompt_context(prompt=prompt)]
    return [*turns, {"role": "user", "content": prompt.text}]


def _response(
    result: GenerationResult, request: GenerationRequest, checkpoint: Checkpoint, engine_name: str
) -> ResponseInput:
    return ResponseInput(
        checkpoint=checkpoint,
        text=result.text,
        temperature=request.temperature,
        top_p=request.top_p,
        seed=request.seed,
        max_new_tokens=request.max_new_tokens,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        finish_reason=result.finish_reason,
        latency_ms=round(result.latency_ms),
        engine=engine_name,
    )


def batch_sample_prompts(
    *,
    batch: Batch,
    prompts: Sequence[Prompt],
    engine: Engine,
    engine_name: str,
    on_pair: Callable[[Comparison], None] | None = None,
) -> list[Comparison]:
    """Sample one pair per prompt into the batch. A prompt already paired in the batch is not sampled again."""
    checkpoints = {c.pk: c for c in batch.checkpoints.all()}
    plan = plan_pairs(len(prompts), list(checkpoints), list(batch.temperatures))
    requests: list[GenerationRequest] = []
    for prompt, pair in zip(prompts, plan, strict=True):
        for side, variant in zip(("first", "second"), pair, strict=True):
            requests.append(
                GenerationRequest(
                    messages=prompt_messages(prompt),
                    checkpoint=str(checkpoint_local_path(checkpoint=checkpoints[variant.checkpoint_id])),
                    temperature=variant.temperature,
                    top_p=batch.top_p,
                    max_new_tokens=batch.max_new_tokens,
                    seed=response_seed(batch.pk, prompt.pk, side),
                )
            )
    results = engine.generate(requests)
    comparisons = []
    for index, (prompt, pair) in enumerate(zip(prompts, plan, strict=True)):
        first, second = (
            _response(
                results[2 * index + side],
                requests[2 * index + side],
                checkpoints[pair[side].checkpoint_id],
                engine_name,
            )
            for side in (0, 1)
        )
        comparison, _ = comparison_create(batch=batch, prompt=prompt, first=first, second=second)
        comparisons.append(comparison)
        if on_pair is not None:
            on_pair(comparison)
    return comparisons
