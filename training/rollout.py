"""Rollouts: prompts file, batched sampling with left padding, and the per-token passes PPO needs.

A rollout row is a left-padded query followed by a response of `max_new_tokens` or fewer tokens; the
response ends at its first EOS and is padded (with a pad id distinct from EOS) after it, so
`ppo_math.response_mask` recovers its real tokens. Sampling runs under a private RNG seeded by the
caller, so the same seed gives the same rollout and a resumed run redraws what an unbroken one drew.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sampler.engines.transformers_engine import LoadedModel, seeded_rng
from training.policy import Policy
from training.ppo_math import ends_with_eos, entropy_of, logprobs_of, response_mask

BAD_PROMPT_LINE = "{path} line {line}: expected {{'prompt': [{{'role': ..., 'content': ...}}, ...], ...}}"


@dataclass(frozen=True)
class PromptRow:
    """One line of a prompts file."""

    prompt: list[dict[str, str]]
    is_safety: bool
    split: str


def load_prompts(path: Path, split: str | None = None) -> list[PromptRow]:
    """The rows of a prompts JSONL file, optionally of one split ("train" or "test"; missing means train)."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            data = json.loads(line)
            prompt = data.get("prompt") if isinstance(data, dict) else None
            if not isinstance(prompt, list) or not all(isinstance(m, dict) and "content" in m for m in prompt):
                raise ValueError(BAD_PROMPT_LINE.format(path=path, line=number))
            rows.append(PromptRow(prompt, bool(data.get("is_safety", False)), data.get("split") or "train"))
    return [row for row in rows if split is None or row.split == split]


def encode_prompts(policy: Policy, prompts: Sequence[list[dict[str, str]]]) -> list[list[int]]:
    """Token ids of each dialogue in the policy's chat template, ending in the assistant's generation prompt."""
    loaded = LoadedModel(policy.model, policy.tokenizer, (policy.eos_token_id,), policy.pad_token_id)
    return [loaded.encode_chat(prompt) for prompt in prompts]  # type: ignore[arg-type]


@dataclass
class Rollout:
    """Sampled responses, (batch, query length) and (batch, response length) tensors on the model's device."""

    query: torch.Tensor
    query_mask: torch.Tensor
    response: torch.Tensor
    mask: torch.Tensor
    """1 on real response tokens (up to and including EOS)."""
    ended: torch.Tensor
    """Whether each response produced an EOS (the rest hit max_new_tokens)."""
    texts: list[str]
    """The responses decoded, without EOS."""

    def rows(self, index: torch.Tensor | slice) -> Rollout:
        texts = self.texts[index] if isinstance(index, slice) else [self.texts[i] for i in index.tolist()]
        return Rollout(
            self.query[index], self.query_mask[index], self.response[index], self.mask[index], self.ended[index], texts
        )

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query, self.response], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.mask], dim=1)

    @property
    def position_ids(self) -> torch.Tensor:
        """Positions counted from each row's first real token, as generate() counts them under left padding."""
        return (self.attention_mask.cumsum(dim=1) - 1).clamp(min=0)


def left_pad(prompts: Sequence[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, width - len(prompt) :] = 1
    return input_ids, attention_mask


@torch.no_grad()
def generate(
    policy: Policy,
    prompts: Sequence[list[int]],
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    batch_size: int | None = None,
) -> Rollout:
    """Sample one response per prompt with model.generate, `batch_size` prompts at a time (all by default), the
    calls drawing one after another from one RNG seeded with `seed`."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive for sampling, got {temperature}")
    device = next(policy.model.parameters()).device
    step = batch_size or len(prompts)
    with seeded_rng(seed, device):
        responses = [
            sample_responses(
                policy,
                prompts[start : start + step],
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
            )
            for start in range(0, len(prompts), step)
        ]
    return assemble_rollout(policy, prompts, responses)


@torch.no_grad()
def sample_responses(
    policy: Policy,
    prompts: Sequence[list[int]],
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    synced: bool = False,
) -> torch.Tensor:
    """One model.generate call over `prompts` (left-padded) under the caller's RNG: the response tokens on the CPU,
    (prompts, longest response), pad after EOS. `synced`: the model is sharded (FSDP), so every process keeps
    running forward passes until all of them are done (transformers' `synced_gpus`)."""
    device = next(policy.model.parameters()).device
    query, query_mask = left_pad(prompts, policy.pad_token_id)
    output = policy.model.generate(
        input_ids=query.to(device),
        attention_mask=query_mask.to(device),
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        top_k=0,
        repetition_penalty=1.0,
        eos_token_id=policy.eos_token_id,
        pad_token_id=policy.pad_token_id,
        synced_gpus=synced,
    )
    response: torch.Tensor = output[:, query.shape[1] :].cpu()
    return response


def assemble_rollout(policy: Policy, prompts: Sequence[list[int]], responses: Sequence[torch.Tensor]) -> Rollout:
    """The Rollout of `prompts` from the responses of consecutive generation calls over them (rows in prompt
    order): queries left-padded and responses right-padded to one width, nothing kept after the first EOS."""
    device = next(policy.model.parameters()).device
    query, query_mask = left_pad(prompts, policy.pad_token_id)
    width = max(part.shape[1] for part in responses)
    response = torch.cat([_pad(part.long(), width, policy.pad_token_id, left=False) for part in responses])
    mask = response_mask(response, policy.eos_token_id)
    response = torch.where(mask.bool(), response, policy.pad_token_id)  # nothing after EOS survives
    ended = ends_with_eos(response, policy.eos_token_id)
    contents = [row[row_mask.bool()].tolist() for row, row_mask in zip(response, mask, strict=True)]
    texts = policy.tokenizer.batch_decode(contents, skip_special_tokens=True)
    return Rollout(
        query.to(device), query_mask.to(device), response.to(device), mask.to(device), ended.to(device), texts
    )


def _pad(tensor: torch.Tensor, width: int, value: int, *, left: bool) -> torch.Tensor:
    missing = width - tensor.shape[1]
    if missing == 0:
        return tensor
    padding = torch.full((tensor.shape[0], missing), value, dtype=tensor.dtype)
    return torch.cat([padding, tensor] if left else [tensor, padding], dim=1)


def response_logits(model: Any, rollout: Rollout) -> torch.Tensor:
    """The logits that predicted each response token, (batch, response length, vocab)."""
    logits: torch.Tensor = model(
        input_ids=rollout.input_ids, attention_mask=rollout.attention_mask, position_ids=rollout.position_ids
    ).logits
    start = rollout.query.shape[1]
    return logits[:, start - 1 : -1]


def response_logprobs(
    model: Any, rollout: Rollout, temperature: float, *, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities of the response tokens at the sampling temperature (and the entropy if asked)."""
    logits = response_logits(model, rollout)
    logprobs = logprobs_of(logits, rollout.response, temperature)
    entropy = entropy_of(logits.float() / temperature) if with_entropy else None
    return logprobs, entropy
