"""Held-out evaluation of an iteration: the new and the previous policy answer the same held-out prompts
(same seeds), and the iteration's reward models score both answers."""

from pathlib import Path
from statistics import fmean
from typing import Any

from backend.checkpoints.models import Checkpoint
from backend.checkpoints.selectors import checkpoint_local_path
from sampler.engines import GenerationRequest
from sampler.planning import response_seed
from sampler.services import sampler_engine

EVAL_PROMPTS = 32
EVAL_TEMPERATURE = 0.7
EVAL_MAX_NEW_TOKENS = 128
SAMPLES_KEPT = 64


def heldout_prompts(path: Path, limit: int) -> list[tuple[list[dict[str, str]], bool]]:
    """(messages, is_safety) of the test split, or the first train prompts when there is no test split."""
    from training.rollout import load_prompts  # torch: only where iterations run

    rows = load_prompts(path, "test") or load_prompts(path, "train")
    return [(row.prompt, row.is_safety) for row in rows[:limit]]


def policies_compare(
    *,
    new: Checkpoint,
    previous: Checkpoint,
    prompts_path: Path,
    reward_helpfulness: Checkpoint,
    reward_safety: Checkpoint | None,
    prompts: int = EVAL_PROMPTS,
    max_new_tokens: int = EVAL_MAX_NEW_TOKENS,
) -> dict[str, Any]:
    """Mean R_c of each policy's answers to the held-out prompts, with the samples (the first 64) kept."""
    from training.scoring import PiecewiseScorer  # torch: only where iterations run

    rows = heldout_prompts(prompts_path, prompts)
    _, engine = sampler_engine()
    replies = {}
    for label, checkpoint in (("new", new), ("previous", previous)):
        requests = [
            GenerationRequest(
                messages=messages,
                checkpoint=str(checkpoint_local_path(checkpoint=checkpoint)),
                temperature=EVAL_TEMPERATURE,
                max_new_tokens=max_new_tokens,
                seed=response_seed("heldout", index),
            )
            for index, (messages, _) in enumerate(rows)
        ]
        replies[label] = [result.text for result in engine.generate(requests)]
    scorer = PiecewiseScorer(
        checkpoint_local_path(checkpoint=reward_helpfulness),
        checkpoint_local_path(checkpoint=reward_safety) if reward_safety else None,
    )
    messages = [messages for messages, _ in rows]
    is_safety = [safety for _, safety in rows]
    scores = {label: scorer.probability(messages, texts, is_safety) for label, texts in replies.items()}
    return {
        "prompts": len(rows),
        "new_policy": new.name,
        "previous_policy": previous.name,
        "new_mean_reward": fmean(scores["new"]) if rows else None,
        "previous_mean_reward": fmean(scores["previous"]) if rows else None,
        "samples": [
            {
                "prompt": row_messages[-1]["content"],
                "new": replies["new"][i],
                "previous": replies["previous"][i],
                "new_reward": scores["new"][i],
                "previous_reward": scores["previous"][i],
            }
            for i, row_messages in enumerate(messages[:SAMPLES_KEPT])
        ],
    }
