"""The reward model: a Hugging Face backbone with a scalar head, and its loss (Llama 2, section 3.2.2).

Built on `AutoModelForSequenceClassification` with one label, so a saved reward model is a plain
Hugging Face directory that transformers (and vLLM) open as it is. Decoders score the last real
token (the pad token must differ from EOS, or the score would be read at the wrong place);
encoders score the first token through their pooler.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

PAD_IS_EOS = (
    "the tokenizer of {path} pads with its EOS token; a decoder reward model reads its score at the last "
    "non-pad token, so pad must differ from EOS"
)
STATS_FILE = "reward_stats.json"


def ranking_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """Llama 2's binary ranking loss with margin: mean of -log(sigmoid(r_chosen - r_rejected - m(r)))."""
    return -F.logsigmoid(chosen - rejected - margin).mean()


def head_module(model: PreTrainedModel) -> torch.nn.Linear:
    """The scalar head: `score` on decoders, `classifier` on encoders."""
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"{type(model).__name__} has no linear score/classifier head")
    return head


def load_backbone(
    path: str | Path, *, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A fresh reward model on a backbone, with its head initialised as in the RLHF literature.

    The head's weights are N(0, 1/(d_model + 1)) and its bias 0 (Stiennon et al. 2020), so initial
    rewards have unit-order variance whatever the width. Dropout is switched off: the same input must
    score the same in the chosen and the rejected half of a batch.
    """
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = AutoConfig.from_pretrained(path, num_labels=1)
    for name, value in list(vars(config).items()):
        if "dropout" in name and isinstance(value, float):
            setattr(config, name, 0.0)
    model = AutoModelForSequenceClassification.from_pretrained(path, config=config, dtype=dtype)
    decoder = not _is_encoder(path)
    if tokenizer.pad_token_id is None or (decoder and tokenizer.pad_token_id == tokenizer.eos_token_id):
        raise ValueError(PAD_IS_EOS.format(path=path))
    model.config.pad_token_id = tokenizer.pad_token_id
    head = head_module(model)
    with torch.no_grad():
        head.weight.normal_(0.0, 1.0 / math.sqrt(head.in_features + 1))
        if head.bias is not None:
            head.bias.zero_()
    return model, tokenizer


def _is_encoder(path: str | Path) -> bool:
    config = json.loads((Path(path) / "config.json").read_text())
    return config.get("model_type") in {"bert", "roberta", "deberta", "deberta-v2", "distilbert", "electra"}


def save_reward_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: Path, *, mean: float, std: float
) -> None:
    """Write the model (config + safetensors), the tokenizer, and the score's mean/std on the training data."""
    model.config.reward_mean = mean
    model.config.reward_std = std
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    (directory / STATS_FILE).write_text(json.dumps({"mean": mean, "std": std}, indent=2) + "\n")
