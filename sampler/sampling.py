"""Filling a batch with response pairs: plan the variants, generate, store each pair once."""

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from django.db.models import Count

from backend.batches.models import Batch, Comparison, Prompt
from backend.batches.selectors import prompt_messages
from backend.batches.services.comparisons import ResponseInput, comparison_create
from backend.checkpoints.models import Checkpoint
from backend.checkpoints.selectors import checkpoint_local_path
from preference_format import FinishReason, Reproducibility
from sampler.engines import Engine, GenerationRequest, GenerationResult
from sampler.planning import Pair, Variant, most_uncertain, plan_pairs, response_seed
from sampler.signals import responses_scored

SIDES = ("first", "second")


class PairScorer(Protocol):
    """A reward model as uncertainty selection uses it (sampler.engines.reward.RewardScorer is one)."""

    def score(self, prompts: Sequence[list[dict[str, str]]], replies: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True)
class Uncertainty:
    """Keep the `keep` candidate pairs that `scorer` (the registered `checkpoint`) is least sure about."""

    scorer: PairScorer
    checkpoint: Checkpoint
    keep: int


def _response_input(
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
        engine_version=result.provenance.engine_version,
        device=result.provenance.device,
        dtype=result.provenance.dtype,
        reproducibility=result.provenance.reproducibility if request.seed is not None else Reproducibility.NONE,
    )


def _same(first: GenerationResult, second: GenerationResult) -> bool:
    return first.text.strip() == second.text.strip()


def _design_uses(batch: Batch) -> Counter[Pair]:
    """How often the batch's pairs so far used each (first, second) variant combination."""
    sides = (
        Comparison.objects.filter(batch=batch, is_gold=False)
        .values(
            "first_response__checkpoint_id",
            "first_response__temperature",
            "second_response__checkpoint_id",
            "second_response__temperature",
        )
        .annotate(uses=Count("id"))
        .order_by()
    )
    return Counter(
        {
            (
                Variant(row["first_response__checkpoint_id"], row["first_response__temperature"]),
                Variant(row["second_response__checkpoint_id"], row["second_response__temperature"]),
            ): row["uses"]
            for row in sides
        }
    )


def _plan(batch: Batch, prompts: Sequence[Prompt], checkpoint_ids: list[int]) -> list[Pair]:
    """The prompts' pairs, dealt from the batch's least-used combinations; ties start where the first prompt's id
    points, so that chunks sampled at once from the same counts take different combinations."""
    start = prompts[0].pk if prompts else 0
    return plan_pairs(len(prompts), checkpoint_ids, list(batch.temperatures), used=_design_uses(batch), start=start)


def _requests(
    batch: Batch, prompts: Sequence[Prompt], plan: Sequence[Pair], checkpoints: dict[int, Checkpoint]
) -> list[GenerationRequest]:
    """Two requests per prompt (first side, second side), each seeded by (batch, prompt, side) and sent where
    the registry says its checkpoint is served."""
    return [
        GenerationRequest(
            messages=prompt_messages(prompt=prompt),
            checkpoint=str(checkpoint_local_path(checkpoint=checkpoints[variant.checkpoint_id])),
            temperature=variant.temperature,
            top_p=batch.top_p,
            max_new_tokens=batch.max_new_tokens,
            seed=response_seed(batch.pk, prompt.pk, side),
            endpoint=checkpoints[variant.checkpoint_id].serving_url,
            served_model=checkpoints[variant.checkpoint_id].served_model_name,
        )
        for prompt, pair in zip(prompts, plan, strict=True)
        for side, variant in zip(SIDES, pair, strict=True)
    ]


def _resample_identical(
    batch: Batch,
    prompts: Sequence[Prompt],
    requests: list[GenerationRequest],
    results: list[GenerationResult],
    engine: Engine,
) -> None:
    """Draw the second side of each pair whose two texts came out the same once more, with a new seed (in place)."""
    identical = [i for i in range(len(prompts)) if _same(results[2 * i], results[2 * i + 1])]
    if not identical:
        return
    retries = [
        replace(requests[2 * i + 1], seed=response_seed(batch.pk, prompts[i].pk, "second", "retry")) for i in identical
    ]
    for i, retry, result in zip(identical, retries, engine.generate(retries), strict=True):
        requests[2 * i + 1], results[2 * i + 1] = retry, result


def batch_sample_prompts(
    *,
    batch: Batch,
    prompts: Sequence[Prompt],
    engine: Engine,
    engine_name: str,
    on_pair: Callable[[Comparison], None] | None = None,
    uncertainty: "Uncertainty | None" = None,
) -> list[Comparison]:
    """Sample one pair per prompt into the batch; returns the batch's pairs for these prompts.

    With `uncertainty`, every prompt's pair is a candidate: both sides are scored by the reward model and
    only the `keep` pairs with the smallest reward difference are stored (their scores are sent as
    `responses_scored`).

    Every response is drawn with a seed derived from (batch, prompt, side), so a redelivered task draws
    the same text; a pair whose two responses came out identical has its second side re-sampled once
    with a new seed, and is flagged `responses_identical` if it is still the same. A prompt already
    paired in the batch keeps its pair (the database allows one per prompt and batch).
    """
    checkpoints = {c.pk: c for c in batch.checkpoints.all()}
    plan = _plan(batch, prompts, list(checkpoints))
    requests = _requests(batch, prompts, plan, checkpoints)
    results = engine.generate(requests)
    _resample_identical(batch, prompts, requests, results, engine)

    # An aborted response is incomplete: its prompt stays unpaired, for a later chunk or a resume to draw again.
    kept = [
        i
        for i in range(len(prompts))
        if FinishReason.ABORT not in (results[2 * i].finish_reason, results[2 * i + 1].finish_reason)
    ]
    scores: list[float] = []
    if uncertainty is not None:
        engine.release_device()  # the reward model must not share the GPU with an engine that reserved most of it
        scores = uncertainty.scorer.score(
            [[dict(message) for message in request.messages] for request in requests], [r.text for r in results]
        )
        differences = [scores[2 * i] - scores[2 * i + 1] for i in kept]
        kept = [kept[k] for k in most_uncertain(differences, uncertainty.keep)]

    comparisons = []
    kept_scores: dict[int, float] = {}
    for i in kept:
        prompt, pair = prompts[i], plan[i]
        first, second = (
            _response_input(results[2 * i + s], requests[2 * i + s], checkpoints[pair[s].checkpoint_id], engine_name)
            for s in (0, 1)
        )
        comparison, _ = comparison_create(
            batch=batch,
            prompt=prompt,
            first=first,
            second=second,
            responses_identical=_same(results[2 * i], results[2 * i + 1]),
        )
        comparisons.append(comparison)
        if uncertainty is not None:
            kept_scores[comparison.first_response_id] = scores[2 * i]
            kept_scores[comparison.second_response_id] = scores[2 * i + 1]
        if on_pair is not None:
            on_pair(comparison)
    if uncertainty is not None:
        responses_scored.send(sender=Uncertainty, checkpoint=uncertainty.checkpoint, scores=kept_scores)
    return comparisons
