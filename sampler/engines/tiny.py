"""Tiny Llama checkpoints built from a config: no download, built and loaded in well under a second.

For tests anywhere in the project (engines, reward models, PPO): ``build_tiny_checkpoint(dir)`` writes a
Hugging Face checkpoint directory (safetensors) that ``AutoModelForCausalLM``, ``AutoTokenizer`` and
``AutoModelForSequenceClassification`` load like any other. Its tokenizer is a byte-level BPE trained
in-process, so it encodes any text, with ChatML special tokens and chat template:

========================  ===============================================
``<pad>`` (id 0)          pad token, distinct from EOS
``<unk>`` (id 1)          unknown token (byte-level BPE never needs it)
``<|im_start|>`` (id 2)   BOS; opens a turn
``<|im_end|>`` (id 3)     EOS; closes a turn
========================  ===============================================

The weights are random (seeded), so completions are gibberish; ``eos_boost`` makes EOS likely on demand.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from sampler.engines.chatml import CHATML_TEMPLATE, IM_END, IM_START

PAD = "<pad>"
UNK = "<unk>"
SPECIAL_TOKENS = (PAD, UNK, IM_START, IM_END)

_CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Hello! How are you today? I am fine, thank you.",
    "Write a short poem about the sea, the sky and the wind.",
    "A good answer is helpful, honest and harmless.",
    "1 2 3 4 5 6 7 8 9 10; x = y + z * 2",
)


def build_tiny_tokenizer(vocab_size: int = 384) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a few sentences, with the ChatML tokens and chat template."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=UNK,
        chat_template=CHATML_TEMPLATE,
    )


def build_tiny_checkpoint(
    target_dir: Path,
    seed: int = 0,
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    eos_boost: float = 0.0,
) -> Path:
    """Write a randomly initialised (from ``seed``) tiny ``LlamaForCausalLM`` and its tokenizer to ``target_dir``.

    The random model's logits are nearly flat, so EOS comes now and then. ``eos_boost`` adds roughly that
    much to EOS's logit at every position: about the log of the vocabulary size (6) ends completions after
    a few tokens, 50 ends every completion at its first token (greedy included), -50 means no completion
    ever stops before ``max_new_tokens``. Returns ``target_dir``.
    """
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching the caller's RNG
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    if eos_boost:
        _boost_eos(model, tokenizer.eos_token_id, eos_boost)
    target_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target_dir, safe_serialization=True)
    tokenizer.save_pretrained(target_dir)
    return target_dir


@torch.no_grad()
def _boost_eos(model: LlamaForCausalLM, eos_token_id: int, boost: float) -> None:
    """Reserve hidden channel 0 as a constant that only EOS's output row reads.

    Every token embedding gets 1.0 in channel 0 and no layer writes to it, so after the final RMSNorm it
    holds about ``sqrt(hidden_size)`` at every position (the other channels are small at initialisation);
    EOS's lm_head weight on it is ``boost / sqrt(hidden_size)`` and every other token's is 0.
    """
    model.model.embed_tokens.weight[:, 0] = 1.0
    for layer in model.model.layers:
        layer.self_attn.o_proj.weight[0, :] = 0.0
        layer.mlp.down_proj.weight[0, :] = 0.0
    model.lm_head.weight[:, 0] = 0.0
    model.lm_head.weight[eos_token_id, 0] = boost / math.sqrt(model.config.hidden_size)
