"""PPO's models on one process or many: the policy, its frozen reference, the value model, their optimizers.

Under torchrun the trained policy and value model are replicated with DDP (gradients averaged over processes),
or with `fsdp` sharded with FSDP2 (the reference too), each transformer block its own unit. The value model is
read through `TokenValues`, a module whose forward gives the value head at every position, so that DDP and FSDP
see every pass. Resumable states hold whole (unsharded) state dicts, so a run can resume on any number of
processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.parallel import DistributedDataParallel

from training.distributed import Runtime, full_model_state, full_states, load_states, shard
from training.policy import Policy, load_policy, load_value_model, token_values

if TYPE_CHECKING:
    from training.ppo import PPOConfig


class TokenValues(torch.nn.Module):
    """The value model's scalar head at every position, (batch, length) in fp32."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> Any:
        return token_values(self.model, input_ids, attention_mask, position_ids)


@dataclass
class PolicyModels:
    policy: Policy
    reference: Policy
    value: Any
    """The value model itself (a sequence classifier)."""
    value_init: str
    policy_optimizer: torch.optim.Optimizer
    value_optimizer: torch.optim.Optimizer
    runtime: Runtime
    sharded: bool
    policy_trained: Any
    """What optimisation passes go through: the policy's model, or its DDP wrapper."""
    values: TokenValues
    values_trained: Any
    """`values`, or its DDP wrapper."""


def load_models(config: PPOConfig, runtime: Runtime, dtype: torch.dtype) -> PolicyModels:
    """The trained policy and value model in fp32 (computing under autocast); the frozen reference in `dtype`."""
    device = runtime.device
    policy = load_policy(config.policy, device=device, dtype=torch.float32)
    reference = load_policy(config.policy, device=device, dtype=dtype, trainable=False)
    value, value_init = load_value_model(
        config.policy, policy.tokenizer, config.reward_helpfulness, device=device, dtype=torch.float32
    )
    values = TokenValues(value)
    sharded = runtime.distributed and config.fsdp
    if sharded:
        shard(policy.model, runtime)
        shard(reference.model, runtime)
        shard(value, runtime, root=values)

    def adamw(model: Any, learning_rate: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            model.parameters(),
            lr=learning_rate,
            betas=config.adam_betas,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )

    replicated = runtime.distributed and not sharded
    value_lr = config.value_learning_rate if config.value_learning_rate is not None else config.learning_rate
    return PolicyModels(
        policy,
        reference,
        value,
        value_init,
        adamw(policy.model, config.learning_rate),
        adamw(values, value_lr),
        runtime,
        sharded,
        DistributedDataParallel(policy.model) if replicated else policy.model,
        values,
        DistributedDataParallel(values) if replicated else values,
    )


def model_states(models: PolicyModels) -> dict[str, Any]:
    """Both models and optimizers as whole state dicts (a collective call when they are sharded)."""
    policy, policy_optimizer = full_states(models.policy.model, models.policy_optimizer)
    value, value_optimizer = full_states(models.values, models.value_optimizer)
    return {"policy": policy, "value": value, "policy_optimizer": policy_optimizer, "value_optimizer": value_optimizer}


def load_model_states(state: dict[str, Any], models: PolicyModels) -> None:
    """Put `model_states` back, into models sharded or not."""
    load_states(models.policy.model, models.policy_optimizer, state["policy"], state["policy_optimizer"])
    load_states(models.values, models.value_optimizer, state["value"], state["value_optimizer"])


def unsharded_policy(models: PolicyModels, start: Path) -> Policy | None:
    """The trained policy as an ordinary model on the main process (None elsewhere); a collective call when it is
    sharded, whose whole weights then go into a fresh copy of the starting policy on the CPU."""
    if not models.sharded:
        return models.policy
    state = full_model_state(models.policy.model)
    if not models.runtime.main:
        return None
    copy = load_policy(start, device=torch.device("cpu"), dtype=torch.float32, trainable=False)
    copy.model.load_state_dict(state)
    return copy
