"""Reward-model inference: load a saved reward model, encode (dialogue, reply), score in length-sorted batches.

Reward scores are read where responses are made (uncertainty selection in the sampler), judged (the dashboards'
drift figures) and optimised (PPO, rejection sampling in `training/`), so they live with the other engines: one
floor below `training/`, which trains these models and imports this module to read them. No Django here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


def load_reward_model(directory: str | Path, *, device: str = "cpu") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A saved reward model (one-label sequence classifier) in eval mode, with its tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1).to(device)
    model.eval()
    return model, tokenizer


def rewards(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One scalar per row."""
    logits: torch.Tensor = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return logits.squeeze(-1).float()


def encode_text(
    tokenizer: PreTrainedTokenizerBase, prompt: list[dict[str, str]], reply: str, max_length: int
) -> list[int]:
    """Token ids of (dialogue, reply): the chat template for chat models, else "prompt [SEP] reply".

    Truncation keeps the end (the reply, which is what is scored) and, for encoders, the [CLS] start.
    """
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": reply}], tokenize=False)
        ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-max_length:]
    context = "\n".join(message["content"] for message in prompt)
    encoded: list[int] = tokenizer(context, reply, truncation="only_first", max_length=max_length)["input_ids"]
    return encoded


def pad_batch(sequences: Sequence[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input_ids and attention_mask, (len(sequences), longest)."""
    longest = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


@torch.no_grad()
def score_sequences(
    model: PreTrainedModel, sequences: Sequence[list[int]], pad_token_id: int, batch_size: int = 32
) -> torch.Tensor:
    """The reward of each token sequence, on the CPU, in order; similar lengths are batched together."""
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scores = torch.empty(len(sequences))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        input_ids, attention_mask = pad_batch([sequences[i] for i in chunk], pad_token_id)
        scores[chunk] = rewards(model, input_ids.to(device), attention_mask.to(device)).cpu()
    return scores


class RewardScorer:
    """A loaded reward model. `score` gives raw rewards; `probability` their sigmoid, which Llama 2's PPO uses."""

    def __init__(
        self, directory: str | Path, *, device: str = "cpu", max_length: int = 512, batch_size: int = 16
    ) -> None:
        self.model, self.tokenizer = load_reward_model(directory, device=device)
        self.max_length = max_length
        self.batch_size = batch_size

    def score(self, prompts: Sequence[list[dict[str, str]]], replies: Sequence[str]) -> list[float]:
        sequences = [
            encode_text(self.tokenizer, prompt, reply, self.max_length)
            for prompt, reply in zip(prompts, replies, strict=True)
        ]
        return score_sequences(self.model, sequences, self.tokenizer.pad_token_id or 0, self.batch_size).tolist()

    def probability(self, prompts: Sequence[list[dict[str, str]]], replies: Sequence[str]) -> list[float]:
        return [1 / (1 + math.exp(-value)) for value in self.score(prompts, replies)]
