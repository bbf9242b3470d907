"""Batched generation with Hugging Face transformers on CPU or one GPU: the embedded default engine."""

from __future__ import annotations

import gc
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from preference_format import FinishReason, Reproducibility
from sampler.engines.base import (
    CHECKPOINT_LOAD_FAILED,
    ChatMessage,
    Engine,
    EngineError,
    GenerationRequest,
    GenerationResult,
    Provenance,
)

PAD_CANDIDATES = ("<pad>", "<|pad|>", "<|finetune_right_pad_id|>", "<|endoftext|>")
"""Tokens tried, in order and before the unknown token, as padding for a tokenizer whose pad is missing or EOS."""


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint ready to generate: model on its device, tokenizer, and the token ids generation needs."""

    model: Any
    """A ``PreTrainedModel`` with ``generate`` (transformers' types declare no base class that has both)."""
    tokenizer: PreTrainedTokenizerBase
    eos_token_ids: tuple[int, ...]
    pad_token_id: int

    def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Token ids of the dialogue rendered by the checkpoint's chat template, ending in a generation prompt.

        The template writes every special token it wants (some write BOS), so encoding adds none.
        """
        text = self.tokenizer.apply_chat_template(
            [dict(message) for message in messages], add_generation_prompt=True, tokenize=False
        )
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids


class _GroupKey(NamedTuple):
    """Requests that share these settings can be generated in one batch."""

    checkpoint: str
    temperature: float
    top_p: float
    max_new_tokens: int


class TransformersEngine(Engine):
    """Generates with ``model.generate`` in left-padded batches.

    Requests are grouped by (checkpoint, temperature, top_p, max_new_tokens), every group of one checkpoint
    before the next and the checkpoints already in memory first; within a group they are sorted by prompt
    length (less padding) and cut into batches of ``batch_size``. Temperature 0 is greedy. Only the
    request's temperature and top_p shape the distribution: the checkpoint's ``generation_config`` sampling
    defaults (top_k, repetition penalty) are overridden, so a request alone says how it was sampled.

    Seeding: each sampled batch runs under a private RNG seeded from the seeds of all its requests, in
    batch order (a batch whose requests all have ``seed=None`` is unseeded). The same requests with the same
    seeds, on the same device and ``batch_size``, therefore reproduce the same texts; a request's text does
    depend on the batch it lands in, so the same seed alone or in another batch may give another text
    (``Reproducibility.BATCH`` in the results' provenance).

    Loaded models are kept in a per-engine LRU of ``max_loaded_models`` entries; ``get_engine`` shares one
    engine per process. Calls are serialised by a lock: one batch at a time uses the device fully.
    """

    def __init__(self, *, device: str | None = None, batch_size: int = 8, max_loaded_models: int = 2) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_loaded_models < 1:
            raise ValueError(f"max_loaded_models must be at least 1, got {max_loaded_models}")
        resolved = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if resolved.type == "cuda" and resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
        self.device = resolved
        self.dtype = torch.float32 if self.device.type == "cpu" else torch.bfloat16
        self.batch_size = batch_size
        self.max_loaded_models = max_loaded_models
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else ""
        self._provenance = Provenance(
            engine="transformers",
            engine_version=f"transformers {transformers.__version__}, torch {torch.__version__}",
            device=f"{self.device} {device_name}".strip(),
            dtype=str(self.dtype).removeprefix("torch."),
            reproducibility=Reproducibility.BATCH,
        )

    @property
    def _unseeded(self) -> Provenance:
        return replace(self._provenance, reproducibility=Reproducibility.NONE)

    @property
    def loaded_checkpoints(self) -> list[str]:
        """Resolved paths of the checkpoints in memory, least recently used first."""
        return list(self._models)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results: dict[int, GenerationResult] = {}
        with self._lock:
            for key, indices in _group(requests, resident=self.loaded_checkpoints).items():
                loaded = self._load(key.checkpoint)
                prompts = {index: loaded.encode_chat(requests[index].messages) for index in indices}
                by_length = sorted(indices, key=lambda index: len(prompts[index]))
                for start in range(0, len(by_length), self.batch_size):
                    batch = by_length[start : start + self.batch_size]
                    seed = batch_seed([requests[index].seed for index in batch])
                    outputs = self._generate_batch(loaded, [prompts[index] for index in batch], key, seed)
                    results.update(zip(batch, outputs, strict=True))
        return [results[index] for index in range(len(requests))]

    def _load(self, checkpoint: str) -> LoadedModel:
        """Return the checkpoint from the cache, loading it (and evicting the least recently used) if needed."""
        key = str(Path(checkpoint).expanduser().resolve())
        loaded = self._models.get(key)
        if loaded is not None:
            self._models.move_to_end(key)
            return loaded
        # Evict before loading, so that at most max_loaded_models models are ever in memory at once.
        if len(self._models) >= self.max_loaded_models:
            self._models.popitem(last=False)
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        loaded = load_checkpoint(checkpoint, device=self.device, dtype=self.dtype)
        self._models[key] = loaded
        return loaded

    def _generate_batch(
        self, loaded: LoadedModel, prompts: list[list[int]], key: _GroupKey, seed: int | None
    ) -> list[GenerationResult]:
        provenance = self._provenance if seed is not None or key.temperature == 0 else self._unseeded
        started = time.perf_counter()
        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.full((len(prompts), width), loaded.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            attention_mask[row, width - len(prompt) :] = 1
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": key.temperature, "top_p": key.top_p, "top_k": 0}
            if key.temperature > 0
            else {"do_sample": False}
        )
        with torch.inference_mode(), seeded_rng(seed if key.temperature > 0 else None, self.device):
            output = loaded.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                max_new_tokens=key.max_new_tokens,
                eos_token_id=list(loaded.eos_token_ids),
                pad_token_id=loaded.pad_token_id,
                repetition_penalty=1.0,
                **sampling,
            )
        # A completion ends at its first EOS; one without EOS ran to max_new_tokens and holds no padding.
        completions: list[list[int]] = output[:, width:].tolist()
        ends = [_first_eos(completion, loaded.eos_token_ids) for completion in completions]
        contents = [completion[:end] for completion, end in zip(completions, ends, strict=True)]
        texts: list[str] = loaded.tokenizer.batch_decode(contents, skip_special_tokens=True)
        latency_ms = (time.perf_counter() - started) * 1000
        return [
            GenerationResult(
                text=text,
                prompt_tokens=len(prompt),
                completion_tokens=len(content) if end is None else len(content) + 1,
                finish_reason=FinishReason.LENGTH if end is None else FinishReason.STOP,
                latency_ms=latency_ms,
                provenance=provenance,
            )
            for prompt, content, text, end in zip(prompts, contents, texts, ends, strict=True)
        ]


def load_checkpoint(checkpoint: str, *, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """Load a local Hugging Face checkpoint directory for generation; never touches the network."""
    path = Path(checkpoint).expanduser()
    if not path.is_dir():
        raise EngineError(CHECKPOINT_LOAD_FAILED.format(checkpoint=checkpoint, reason="no such directory"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device, local_files_only=True)
    except Exception as exc:  # any failure to load is the checkpoint's: report it with the path
        reason = f"{type(exc).__name__}: {exc}"
        raise EngineError(CHECKPOINT_LOAD_FAILED.format(checkpoint=checkpoint, reason=reason)) from exc
    if not tokenizer.chat_template:
        raise EngineError(CHECKPOINT_LOAD_FAILED.format(checkpoint=checkpoint, reason="tokenizer has no chat template"))
    eos_token_ids = _eos_token_ids(model, tokenizer)
    if not eos_token_ids:
        raise EngineError(CHECKPOINT_LOAD_FAILED.format(checkpoint=checkpoint, reason="no EOS token is defined"))
    model.eval()
    return LoadedModel(model, tokenizer, eos_token_ids, pad_token_id(tokenizer, eos_token_ids))


def pad_token_id(tokenizer: PreTrainedTokenizerBase, eos_token_ids: tuple[int, ...]) -> int:
    """The id to pad prompts (left) and finished completions with.

    The tokenizer's pad if it has one distinct from EOS; else the first of ``PAD_CANDIDATES`` or the unknown
    token found in the vocabulary and distinct from EOS; else the first EOS. Padding is masked out of
    prompts and cut from completions at the first EOS either way; a distinct pad keeps the two apart in
    the raw output, as training expects.
    """
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id not in eos_token_ids:
        return int(tokenizer.pad_token_id)
    vocab = tokenizer.get_vocab()
    for token in (*PAD_CANDIDATES, tokenizer.unk_token):
        token_id = vocab.get(token) if token is not None else None
        if token_id is not None and token_id not in eos_token_ids:
            return token_id
    return eos_token_ids[0]


def batch_seed(seeds: Sequence[int | None]) -> int | None:
    """One RNG seed for a batch, from its requests' seeds in order; None when no request has a seed."""
    if all(seed is None for seed in seeds):
        return None
    digest = hashlib.sha256(repr(tuple(seeds)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """Every id that ends a completion: the generation config's EOS (one or a list) and the tokenizer's."""
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    ids = [*ids, tokenizer.eos_token_id]
    return tuple(dict.fromkeys(int(token_id) for token_id in ids if token_id is not None))


def _first_eos(completion: list[int], eos_token_ids: tuple[int, ...]) -> int | None:
    return next((index for index, token in enumerate(completion) if token in eos_token_ids), None)


def _group(requests: Sequence[GenerationRequest], resident: Sequence[str] = ()) -> dict[_GroupKey, list[int]]:
    """Indices of the requests that can share batches. All groups of one checkpoint come together; checkpoints
    in `resident` (resolved paths, least recently used first) come first, most recently used first, then the
    others in order of first appearance, so that a model is loaded at most once per call."""
    groups: dict[_GroupKey, list[int]] = {}
    for index, request in enumerate(requests):
        key = _GroupKey(request.checkpoint, request.temperature, request.top_p, request.max_new_tokens)
        groups.setdefault(key, []).append(index)
    recency = {path: rank for rank, path in enumerate(reversed(resident))}
    appearance: dict[str, int] = {}
    for key in groups:
        appearance.setdefault(key.checkpoint, len(appearance))

    def order(key: _GroupKey) -> tuple[int, int]:
        rank = recency.get(str(Path(key.checkpoint).expanduser().resolve()))
        return (0, rank) if rank is not None else (1, appearance[key.checkpoint])

    return {key: groups[key] for key in sorted(groups, key=order)}


@contextmanager
def seeded_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    """Run under a private RNG state seeded with ``seed``, leaving the process's RNG untouched; no-op for None."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        yield
