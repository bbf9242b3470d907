"""Held-out evaluation of an iteration: the new and the previous policy answer the same held-out prompts
(same seeds), and reward models score both answers.

The iteration's own reward models give R_c, the reward its policy step optimised. A policy can raise that
figure by gaming those models rather than by getting better, so the same answers are also scored by reward
models it was not optimised against: the ones the previous iteration trained (the iteration that made the base
policy, when there is one) and any checkpoints the researcher named. A gain under the optimised models only is
the mark of reward hacking.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from backend.checkpoints.models import Checkpoint
from backend.checkpoints.selectors import checkpoint_local_path
from loop.models import Iteration
from sampler.engines import GenerationRequest
from sampler.planning import response_seed
from sampler.services import sampler_engine

EVAL_PROMPTS = 32
EVAL_TEMPERATURE = 0.7
EVAL_MAX_NEW_TOKENS = 128
SAMPLES_KEPT = 64
THIS_ITERATION, PREVIOUS_ITERATION, NAMED = "this_iteration", "previous_iteration", "named"
POLICIES = ("new", "previous")


@dataclass(frozen=True)
class RewardModels:
    """The helpfulness and (optional) safety reward models that one iteration trained."""

    helpfulness: Checkpoint
    safety: Checkpoint | None = None
    iteration: int | None = None


@dataclass(frozen=True)
class _Scored:
    """One reward model in the report: why it is there, and whether the policy was optimised against it."""

    checkpoint: Checkpoint
    source: str
    optimised: bool
    iteration: int | None


def iteration_reward_models(iteration: Iteration) -> RewardModels | None:
    """The reward models an iteration trained (None before its reward-model step made a helpfulness model)."""
    helpfulness = iteration.reward_helpfulness_run.output_checkpoint if iteration.reward_helpfulness_run else None
    if helpfulness is None:
        return None
    safety = iteration.reward_safety_run.output_checkpoint if iteration.reward_safety_run else None
    return RewardModels(helpfulness=helpfulness, safety=safety, iteration=iteration.pk)


def previous_iteration(iteration: Iteration) -> Iteration | None:
    """The iteration that made this one's base policy (the newest, should several have), once it has its reward
    models; None for a base policy registered from outside or made by a policy run started on its own."""
    return (
        Iteration.objects.filter(
            new_policy=iteration.base_policy, reward_helpfulness_run__output_checkpoint__isnull=False
        )
        .exclude(pk=iteration.pk)
        .select_related("reward_helpfulness_run__output_checkpoint", "reward_safety_run__output_checkpoint")
        .order_by("-created_at", "-pk")
        .first()
    )


def heldout_prompts(path: Path, limit: int) -> list[tuple[list[dict[str, str]], bool]]:
    """(messages, is_safety) of the test split, or the first train prompts when there is no test split."""
    from training.rollout import load_prompts  # torch: only where iterations run

    rows = load_prompts(path, "test") or load_prompts(path, "train")
    return [(row.prompt, row.is_safety) for row in rows[:limit]]


def _models(optimised: RewardModels, previous: RewardModels | None, named: Sequence[Checkpoint]) -> list[_Scored]:
    """Every reward model to score with, each once: the optimised ones, the previous iteration's, the named."""
    wanted = [(optimised, THIS_ITERATION, True)]
    if previous is not None:
        wanted.append((previous, PREVIOUS_ITERATION, False))
    models = [
        _Scored(checkpoint, source, is_optimised, pair.iteration)
        for pair, source, is_optimised in wanted
        for checkpoint in (pair.helpfulness, pair.safety)
        if checkpoint is not None
    ]
    models += [_Scored(checkpoint, NAMED, False, None) for checkpoint in named]
    unique: dict[int, _Scored] = {}
    for model in models:
        unique.setdefault(model.checkpoint.pk, model)  # a named model that is already listed keeps its first entry
    return list(unique.values())


def _figures(scores: dict[str, list[float]]) -> dict[str, float | None]:
    """Mean reward of each policy's answers and the new policy's gain (None without prompts)."""
    if not scores["new"]:
        return {"previous_mean_reward": None, "new_mean_reward": None, "gain": None}
    new, previous = fmean(scores["new"]), fmean(scores["previous"])
    return {"previous_mean_reward": previous, "new_mean_reward": new, "gain": new - previous}


def _rc(
    pair: RewardModels, scores: dict[int, dict[str, list[float]]], is_safety: Sequence[bool]
) -> dict[str, list[float]]:
    """R_c of each policy's answers under one iteration's reward models (helpfulness alone without safety)."""
    import torch  # only where iterations run

    from training.ppo_math import choose_score

    helpful = scores[pair.helpfulness.pk]
    if pair.safety is None:
        return helpful
    safe, tagged = scores[pair.safety.pk], torch.tensor(list(is_safety), dtype=torch.bool)
    return {
        policy: choose_score(torch.tensor(helpful[policy]), torch.tensor(safe[policy]), tagged).tolist()
        for policy in POLICIES
    }


def _rc_entry(pair: RewardModels, source: str, rc: dict[str, list[float]]) -> dict[str, Any]:
    return {
        "reward_helpfulness": pair.helpfulness.name,
        "reward_safety": pair.safety.name if pair.safety else None,
        "source": source,
        "iteration": pair.iteration,
        "optimised": source == THIS_ITERATION,
        **_figures(rc),
    }


def policies_compare(
    *,
    new: Checkpoint,
    previous: Checkpoint,
    prompts_path: Path,
    optimised: RewardModels,
    previous_models: RewardModels | None = None,
    named: Sequence[Checkpoint] = (),
    prompts: int = EVAL_PROMPTS,
    max_new_tokens: int = EVAL_MAX_NEW_TOKENS,
) -> dict[str, Any]:
    """Mean R_c of each policy's answers to the held-out prompts under the optimised reward models, the same
    answers under every other reward model (`by_reward_model`, `rc_by_iteration`), and the first 64 samples."""
    from sampler.engines.reward import RewardScorer  # torch: only where iterations run

    rows = heldout_prompts(prompts_path, prompts)
    messages = [messages for messages, _ in rows]
    is_safety = [safety for _, safety in rows]
    _, engine = sampler_engine()
    replies = {}
    for label, checkpoint in (("new", new), ("previous", previous)):
        requests = [
            GenerationRequest(
                messages=row_messages,
                checkpoint=str(checkpoint_local_path(checkpoint=checkpoint)),
                temperature=EVAL_TEMPERATURE,
                max_new_tokens=max_new_tokens,
                seed=response_seed("heldout", index),
            )
            for index, row_messages in enumerate(messages)
        ]
        replies[label] = [result.text for result in engine.generate(requests)]
    models = _models(optimised, previous_models, named)
    scores: dict[int, dict[str, list[float]]] = {}
    for model in models:  # one reward model in memory at a time
        scorer = RewardScorer(checkpoint_local_path(checkpoint=model.checkpoint))
        scores[model.checkpoint.pk] = {policy: scorer.probability(messages, replies[policy]) for policy in POLICIES}
        del scorer
    rc = _rc(optimised, scores, is_safety)
    pairs = [(optimised, THIS_ITERATION)]
    if previous_models is not None:
        pairs.append((previous_models, PREVIOUS_ITERATION))
    return {
        "prompts": len(rows),
        "new_policy": new.name,
        "previous_policy": previous.name,
        "new_mean_reward": fmean(rc["new"]) if rows else None,
        "previous_mean_reward": fmean(rc["previous"]) if rows else None,
        "by_reward_model": [
            {
                "checkpoint": model.checkpoint.name,
                "kind": model.checkpoint.kind,
                "source": model.source,
                "iteration": model.iteration,
                "optimised": model.optimised,
                **_figures(scores[model.checkpoint.pk]),
            }
            for model in models
        ],
        "rc_by_iteration": [_rc_entry(pair, source, _rc(pair, scores, is_safety)) for pair, source in pairs],
        "samples": [
            {
                "prompt": row_messages[-1]["content"],
                "new": replies["new"][i],
                "previous": replies["previous"][i],
                "new_reward": rc["new"][i],
                "previous_reward": rc["previous"][i],
            }
            for i, row_messages in enumerate(messages[:SAMPLES_KEPT])
        ],
    }
