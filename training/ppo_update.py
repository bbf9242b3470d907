"""The learning half of a PPO iteration: the scored rollout made into experience (old and reference
log-probabilities, values, per-token rewards, whitened GAE advantages), then one pass of clipped-surrogate and
clipped-value updates over it in minibatches. Under torchrun each process computes its block of the no-grad passes
and of every minibatch; rewards and advantages are computed over the whole rollout on every process, and DDP (or
FSDP) averages the gradients, the losses scaled so that the average is the minibatch's mean, as in one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from training import ppo_math
from training.distributed import all_sum, contiguous_share, gather_rows
from training.ppo_models import PolicyModels
from training.rollout import Rollout, response_logprobs

if TYPE_CHECKING:
    from training.ppo import PPOConfig


@dataclass
class Experience:
    """A scored rollout with everything the optimisation pass needs, (batch, response length) tensors."""

    rollout: Rollout
    scores: torch.Tensor
    """R_c per response, (batch,)."""
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    entropy: torch.Tensor
    rewards: torch.Tensor
    kl: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


@torch.no_grad()
def make_experience(models: PolicyModels, rollout: Rollout, scores: torch.Tensor, config: PPOConfig) -> Experience:
    """Old and reference log-probabilities, values and entropy (micro-batched; each process computes its block of
    rows and every process gets them all), then rewards and advantages over the whole rollout."""
    start = rollout.query.shape[1]
    share = contiguous_share(rollout.response.shape[0], models.runtime)
    parts: dict[str, list[torch.Tensor]] = {"logprobs": [], "ref": [], "values": [], "entropy": []}
    for first in range(share.start, share.stop, config.micro_batch_size):
        part = rollout.rows(slice(first, min(first + config.micro_batch_size, share.stop)))
        logprobs, entropy = response_logprobs(models.policy.model, part, config.temperature, with_entropy=True)
        ref_logprobs, _ = response_logprobs(models.reference.model, part, config.temperature)
        values = models.values(part.input_ids, part.attention_mask, part.position_ids)
        assert entropy is not None
        parts["logprobs"].append(logprobs)
        parts["ref"].append(ref_logprobs)
        parts["values"].append(values[:, start - 1 : -1])
        parts["entropy"].append(entropy)
    logprobs, ref_logprobs, values, entropy = (gather_rows(torch.cat(parts[key]), models.runtime) for key in parts)
    mask = rollout.mask
    rewards, kl = ppo_math.token_rewards(
        ppo_math.whitened_logit(scores.float()),
        logprobs,
        ref_logprobs,
        mask,
        beta=config.kl_beta,
        missing_eos=~rollout.ended,
        missing_eos_penalty=config.missing_eos_penalty,
    )
    advantages, returns = ppo_math.generalized_advantages(
        rewards, values * mask, mask, gamma=config.gamma, lam=config.lam
    )
    return Experience(rollout, scores, logprobs, ref_logprobs, values * mask, entropy, rewards, kl, advantages, returns)


def optimise(models: PolicyModels, experience: Experience, config: PPOConfig, seed: int) -> dict[str, float]:
    """One pass over the rollout in shuffled minibatches, one policy and one value step per minibatch. Each
    process takes its block of every minibatch; DDP (or FSDP) averages the gradients over processes, and the losses
    are scaled so that this average is the minibatch's mean, as in one process."""
    rollout, runtime = experience.rollout, models.runtime
    start = rollout.query.shape[1]
    order = torch.randperm(rollout.response.shape[0], generator=torch.Generator().manual_seed(seed))
    totals = {"ppo/policy_loss": 0.0, "ppo/value_loss": 0.0, "ppo/clipfrac": 0.0, "ppo/approx_kl": 0.0}
    micro_batches = 0
    for first in range(0, len(order), config.minibatch_size):
        minibatch = order[first : first + config.minibatch_size]
        block = contiguous_share(len(minibatch), runtime)  # minibatch_size is a multiple of the processes
        mine = minibatch[block.start : block.stop]
        models.policy_optimizer.zero_grad(set_to_none=True)
        models.value_optimizer.zero_grad(set_to_none=True)
        for micro_first in range(0, len(mine), config.micro_batch_size):
            index = mine[micro_first : micro_first + config.micro_batch_size].to(rollout.query.device)
            part, mask = rollout.rows(index), rollout.mask[index]
            share = len(index) / len(minibatch) * runtime.world
            with _gradient_sync(models, last=micro_first + config.micro_batch_size >= len(mine)):
                logprobs, _ = response_logprobs(models.policy_trained, part, config.temperature)
                loss, stats = ppo_math.policy_loss(
                    logprobs, experience.logprobs[index], experience.advantages[index], mask, clip=config.clip_range
                )
                values = models.values_trained(part.input_ids, part.attention_mask, part.position_ids)
                value_loss = ppo_math.value_loss(
                    values[:, start - 1 : -1] * mask,
                    experience.values[index],
                    experience.returns[index],
                    mask,
                    clip=config.value_clip,
                )
                (loss * share).backward()
                (value_loss * share).backward()
            totals["ppo/policy_loss"] += loss.item()
            totals["ppo/value_loss"] += value_loss.item()
            totals["ppo/clipfrac"] += stats["ppo/clipfrac"].item()
            totals["ppo/approx_kl"] += stats["ppo/approx_kl"].item()
            micro_batches += 1
        torch.nn.utils.clip_grad_norm_(models.policy.model.parameters(), config.max_grad_norm)
        torch.nn.utils.clip_grad_norm_(models.values.parameters(), config.max_grad_norm)
        models.policy_optimizer.step()
        models.value_optimizer.step()
    *sums, count = all_sum([*totals.values(), micro_batches], runtime)
    return {name: total / count for name, total in zip(totals, sums, strict=True)}


@contextmanager
def _gradient_sync(models: PolicyModels, *, last: bool) -> Iterator[None]:
    """Gradients are averaged over processes on a minibatch's last micro-batch only (no-op in one process)."""
    runtime = models.runtime
    with ExitStack() as stack:
        if models.sharded:
            models.policy.model.set_requires_gradient_sync(last)
            models.values.set_requires_gradient_sync(last)  # type: ignore[operator]
        elif runtime.distributed and not last:
            stack.enter_context(models.policy_trained.no_sync())
            stack.enter_context(models.values_trained.no_sync())
        yield
