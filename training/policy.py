"""The models of policy training: the policy (a causal LM), its frozen reference, and the value model.

The value model is a sequence-classification model read token by token: the reward model when it
shares the policy's vocabulary (Llama 2 3.2.3; "The N implementation details of RLHF with PPO"),
else the policy's backbone with a fresh scalar head. Dropout is off everywhere: PPO compares
log-probabilities of the same tokens across passes, which dropout would make noisy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from training.reward_model import PAD_IS_EOS, head_module, load_backbone

ValueInit = Literal["reward_model", "policy"]


@dataclass(frozen=True)
class Policy:
    """A causal LM with its tokenizer and the two token ids rollouts need (pad and EOS, distinct)."""

    model: Any
    """A ``PreTrainedModel`` with ``generate``."""
    tokenizer: PreTrainedTokenizerBase
    pad_token_id: int
    eos_token_id: int


def resolve_device(device: str) -> torch.device:
    """'auto' is cuda when one is available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def training_dtype(device: torch.device, bf16: bool | None) -> torch.dtype:
    """bf16 on GPU by default; fp32 on CPU, where bf16 runs much slower."""
    use_bf16 = device.type == "cuda" if bf16 is None else bf16
    return torch.bfloat16 if use_bf16 else torch.float32


def mixed_precision(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    """Compute in `dtype` while trained weights stay fp32: an update of LR 1e-6 vanishes in bf16 weights."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)


def _without_dropout(path: Path, **overrides: Any) -> Any:
    config = AutoConfig.from_pretrained(path, **overrides)
    for name, value in list(vars(config).items()):
        if "dropout" in name and isinstance(value, float):
            setattr(config, name, 0.0)
    return config


def load_policy(path: Path, *, device: torch.device, dtype: torch.dtype, trainable: bool = True) -> Policy:
    """The causal LM in `path`, dropout off; refuses a tokenizer that pads with EOS or has no chat template."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError(PAD_IS_EOS.format(path=path))
    if not tokenizer.chat_template:
        raise ValueError(f"the tokenizer of {path} has no chat template; prompts are dialogues")
    model = AutoModelForCausalLM.from_pretrained(path, config=_without_dropout(path), dtype=dtype)
    model.to(device)  # type: ignore[arg-type]
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.requires_grad_(trainable)
    model.eval()  # no dropout, and generate() expects it; gradients flow in eval mode too
    return Policy(model, tokenizer, int(tokenizer.pad_token_id), int(tokenizer.eos_token_id))


def shares_vocabulary(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    return bool(a.get_vocab() == b.get_vocab())


def load_value_model(
    policy_dir: Path,
    policy_tokenizer: PreTrainedTokenizerBase,
    reward_model_dir: Path,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[PreTrainedModel, ValueInit]:
    """The value model and where it came from: the reward model if it reads the policy's tokens, else the policy."""
    if shares_vocabulary(AutoTokenizer.from_pretrained(reward_model_dir), policy_tokenizer):
        config = _without_dropout(reward_model_dir, num_labels=1)
        model = AutoModelForSequenceClassification.from_pretrained(reward_model_dir, config=config, dtype=dtype)
        source: ValueInit = "reward_model"
    else:
        model, _ = load_backbone(policy_dir, dtype=dtype)
        source = "policy"
    model.to(device)  # type: ignore[arg-type]
    model.eval()
    return model, source


def token_values(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
) -> torch.Tensor:
    """The scalar head at every position, (batch, length) in fp32 (a sequence classifier pools only the last)."""
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
    values: torch.Tensor = head_module(model)(hidden).squeeze(-1)
    return values.float()


def save_policy(policy: Policy, directory: Path) -> None:
    """An ordinary Hugging Face checkpoint directory (config, safetensors, tokenizer, generation config)."""
    policy.model.save_pretrained(directory, safe_serialization=True)
    policy.tokenizer.save_pretrained(directory)
