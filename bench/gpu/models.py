"""Llama-architecture checkpoints built from a config with random weights: realistic sizes, nothing downloaded.

Throughput, MFU and time splits depend on the shapes, not on what the weights learned, so random (seeded)
weights measure them as well as trained ones; the texts they generate are gibberish. The tokenizer is a
word-level one whose vocabulary is exactly the model's (``w0``, ``w1``, ... after the ChatML special
tokens), so every id the model can sample decodes to one word and encodes back to the same id: rollouts,
reward scoring and training see the token counts the model produced.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from sampler.engines.chatml import CHATML_TEMPLATE, IM_END, IM_START

PAD, UNK = "<pad>", "<unk>"
SPECIAL_TOKENS = (PAD, UNK, IM_START, IM_END)


@dataclass(frozen=True)
class Shape:
    """A Llama configuration's sizes; ``like`` names the published model it copies."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    like: str


SHAPES = {
    "llama-1.1b": Shape(2048, 5632, 22, 32, 4, 32000, "TinyLlama-1.1B"),
    "llama-7b": Shape(4096, 11008, 32, 32, 32, 32000, "Llama-2-7B"),
    "tiny": Shape(64, 128, 2, 4, 2, 512, "nothing (the dry run's model)"),
    "tiny-wide": Shape(128, 256, 2, 4, 4, 512, "nothing (the dry run's second model)"),
}


@dataclass(frozen=True)
class Built:
    """A checkpoint directory and what the figures need to know about its model."""

    name: str
    path: Path
    parameters: int
    embedding_parameters: int
    """The input embedding table: looked up, not multiplied, so it is left out of FLOPs and of the weights
    that one decoding step reads."""
    head_parameters: int
    """The LM head (untied), which a reward model replaces with its one-output score head."""
    build_s: float

    @property
    def shape(self) -> Shape:
        return SHAPES[self.name]

    @property
    def decode_parameters(self) -> int:
        """Parameters one decoding step reads in full: all but the embedding table."""
        return self.parameters - self.embedding_parameters

    @property
    def backbone_parameters(self) -> int:
        """Parameters of the matrix products of a reward model on this checkpoint (embedding and LM head out)."""
        return self.parameters - self.embedding_parameters - self.head_parameters

    def record(self) -> dict[str, object]:
        return {
            "like": self.shape.like,
            "parameters": self.parameters,
            "embedding_parameters": self.embedding_parameters,
            "head_parameters": self.head_parameters,
            "build_s": round(self.build_s, 2),
        }


def word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """Word-level tokenizer of exactly ``vocab_size`` ids, with ChatML's special tokens and chat template."""
    words = [f"w{index}" for index in range(vocab_size - len(SPECIAL_TOKENS))]
    vocab = {token: index for index, token in enumerate((*SPECIAL_TOKENS, *words))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[IM_START, IM_END],
        chat_template=CHATML_TEMPLATE,
    )


def words(count: int, start: int, vocab_size: int) -> str:
    """``count`` words of a ``word_tokenizer(vocab_size)`` from ``start`` on: a text of ``count`` tokens."""
    size = vocab_size - len(SPECIAL_TOKENS)
    return " ".join(f"w{(start + index) % size}" for index in range(count))


def build(name: str, target: Path, device: torch.device, seed: int = 0) -> Built:
    """Write a seeded random ``SHAPES[name]`` model in bf16 (initialised on ``device``: fast on a GPU)."""
    started = time.perf_counter()
    shape = SHAPES[name]
    tokenizer = word_tokenizer(shape.vocab)
    config = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), _default_dtype(torch.bfloat16):
        torch.manual_seed(seed)
        with device:
            model = LlamaForCausalLM(config)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    embedding = model.model.embed_tokens.weight.numel()
    head = model.lm_head.weight.numel()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Built(name, target, parameters, embedding, head, time.perf_counter() - started)


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


class Workspace:
    """Checkpoints built once and shared by the sections that use them, under one scratch directory."""

    def __init__(self, root: Path, device: torch.device) -> None:
        self.root = root
        self.device = device
        self.built: dict[str, Built] = {}
        self.records: dict[str, object] = {}
        """Every model built, dropped ones included, for the JSON."""

    def model(self, name: str) -> Built:
        if name not in self.built:
            self.built[name] = build(name, self.root / name, self.device)
            self.records[name] = self.built[name].record()
        return self.built[name]

    def drop(self, name: str) -> None:
        """Delete a checkpoint no later section needs (a 7B one is 13 GB of the machine's disk)."""
        built = self.built.pop(name, None)
        if built is not None:
            shutil.rmtree(built.path, ignore_errors=True)

    def scratch(self, name: str) -> Path:
        """An empty directory for one section's files, deleted by `clear_scratch` when the section ends."""
        path = self.root / "scratch" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def clear_scratch(self) -> None:
        shutil.rmtree(self.root / "scratch", ignore_errors=True)
