"""The arithmetic of language-model PPO as small pure functions (Llama 2 3.2.3; "The N implementation
details of RLHF with PPO"). Tensors are (batch, response tokens) unless said otherwise; `mask` is 1 on
real response tokens (up to and including EOS) and 0 on padding after it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SAFETY_THRESHOLD = 0.15
"""Llama 2: use the safety score when it is below this, even on a prompt not tagged safety."""


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over the masked entries."""
    mean = masked_mean(values, mask)
    count = mask.sum().clamp(min=2)
    return ((values - mean) ** 2 * mask).sum() / (count - 1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True) -> torch.Tensor:
    """(values - mean) / std over the masked entries; with shift_mean=False the mean is added back."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


def response_mask(tokens: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 up to and including the first EOS of each row, 0 after it (everything, if there is no EOS)."""
    is_eos = tokens == eos_token_id
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    return (~after_eos).long()


def ends_with_eos(tokens: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Whether each row produced an EOS at all (truncated responses did not)."""
    return (tokens == eos_token_id).any(dim=1)


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-probabilities of `tokens` under `logits` divided by the sampling temperature, as they were drawn."""
    scaled = logits / max(temperature, 1e-6)
    return torch.gather(F.log_softmax(scaled.float(), dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_of(logits: torch.Tensor) -> torch.Tensor:
    probabilities = F.softmax(logits.float(), dim=-1)
    return torch.logsumexp(logits.float(), dim=-1) - (probabilities * logits.float()).sum(-1)


def choose_score(helpfulness: torch.Tensor, safety: torch.Tensor, is_safety_prompt: torch.Tensor) -> torch.Tensor:
    """Llama 2's piecewise reward R_c: the safety score on safety prompts or when it is below 0.15, else
    the helpfulness score (both sigmoid outputs in [0, 1])."""
    use_safety = is_safety_prompt | (safety < SAFETY_THRESHOLD)
    return torch.where(use_safety, safety, helpfulness)


def whitened_logit(scores: torch.Tensor) -> torch.Tensor:
    """whiten(logit(R_c)) over the batch: the score that enters the PPO reward."""
    logits = torch.logit(scores.clamp(1e-6, 1 - 1e-6))
    return (logits - logits.mean()) / (logits.std() + 1e-8) if logits.numel() > 1 else logits - logits.mean()


def token_rewards(
    score: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float,
    missing_eos: torch.Tensor | None = None,
    missing_eos_penalty: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -beta * KL at every token, plus the (penalised) score at the last real token.

    Returns (rewards, kl), both masked. KL is the per-token estimate log pi - log pi_ref.
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = -beta * kl
    if missing_eos is not None:
        score = score - missing_eos_penalty * missing_eos.to(score.dtype)
    last = (mask.sum(dim=1) - 1).clamp(min=0)
    rewards[torch.arange(rewards.shape[0]), last] += score
    return rewards * mask, kl


def generalized_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages (whitened over real tokens) and returns (advantages before whitening + values)."""
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running * (mask[:, t + 1] if t + 1 < rewards.shape[1] else 0)
        advantages[:, t] = running
    returns = advantages + values
    return masked_whiten(advantages, mask) * mask, returns * mask


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *, clip: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped surrogate objective, with clip fraction and approximate KL for the logs."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    stats = {
        "ppo/clipfrac": masked_mean((clipped > unclipped).float(), mask),
        "ppo/approx_kl": 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask),
    }
    return loss, stats


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, *, clip: float
) -> torch.Tensor:
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(returns - values) / Var(returns): how much of the return the value head predicts."""
    return 1 - masked_var(returns - values, mask) / masked_var(returns, mask).clamp(min=1e-8)
