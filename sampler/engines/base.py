"""The engine contract: generation requests in, results out, in the same order."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from preference_format import FinishReason, Reproducibility

ChatMessage = Mapping[str, str]
"""One chat turn, ``{"role": "system" | "user" | "assistant", "content": "..."}``."""

CHECKPOINT_LOAD_FAILED = "could not load checkpoint {checkpoint}: {reason}"
INVALID_REQUEST = "invalid generation request: {reason}"


class EngineError(Exception):
    """An engine could not serve a request (a checkpoint failed to load, an unknown engine)."""


@dataclass(frozen=True)
class GenerationRequest:
    """One completion to draw: the dialogue so far and how to sample the next assistant turn."""

    messages: Sequence[ChatMessage]
    """The dialogue; the checkpoint's chat template renders it with a generation prompt appended."""
    checkpoint: str
    """Where the model lives: a local Hugging Face checkpoint directory for the transformers engine."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling mass, in (0, 1]; 1 disables it."""
    max_new_tokens: int = 256
    """Completion budget; a completion that uses it all without EOS finishes with ``"length"``."""
    seed: int | None = None
    """Makes sampling reproducible; how far depends on the engine (its results' ``provenance`` says)."""
    endpoint: str = ""
    """For the openai engine: the base URL of the server that serves this checkpoint (the registry's
    ``serving_url``); empty means the engine's own ``base_url``. Other engines ignore it."""
    served_model: str = ""
    """For the openai engine: the model name the server knows the checkpoint by; empty means the engine's own."""

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError(INVALID_REQUEST.format(reason="messages must not be empty"))
        if self.temperature < 0:
            raise ValueError(INVALID_REQUEST.format(reason=f"temperature {self.temperature} is negative"))
        if not 0 < self.top_p <= 1:
            raise ValueError(INVALID_REQUEST.format(reason=f"top_p {self.top_p} is outside (0, 1]"))
        if self.max_new_tokens < 1:
            raise ValueError(INVALID_REQUEST.format(reason=f"max_new_tokens {self.max_new_tokens} is below 1"))


@dataclass(frozen=True)
class Provenance:
    """What produced a response, as it is stored beside it."""

    engine: str
    """The engine's name: transformers, vllm or openai."""
    engine_version: str
    """The library versions that generated, e.g. "vllm 0.13.0" or "transformers 5.23.0, torch 2.13.0"."""
    device: str
    """Where it ran: "cpu", "cuda:0 NVIDIA H200", or the serving URL for a remote server."""
    dtype: str
    """The weights' dtype in the engine ("bfloat16"), or "" when a remote server does not say."""
    reproducibility: Reproducibility
    """How far the request's seed reproduces the text (``Reproducibility.NONE`` when there is no seed)."""


@dataclass(frozen=True)
class GenerationResult:
    """One completion and what it cost."""

    text: str
    """The completion with special tokens (EOS included) removed."""
    prompt_tokens: int
    """Tokens in the rendered chat prompt, padding excluded."""
    completion_tokens: int
    """Generated tokens up to and including EOS; padding after EOS excluded."""
    finish_reason: FinishReason
    """As the engine said: stop (EOS or a stop string), length (``max_new_tokens`` ran out), abort (the engine
    gave up on the request: its text is incomplete), content_filter (a server's filter cut it)."""
    latency_ms: float
    """Wall-clock time of the batch that generated this completion; requests batched together share it."""
    provenance: Provenance


class Engine(ABC):
    """Generates completions for a list of requests.

    Implementations may group, batch and reorder work internally, but ``generate`` returns exactly one
    result per request, in request order.
    """

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Generate one completion per request; raise ``EngineError`` when a checkpoint cannot be used.

        Engines that hold models generate every request of one checkpoint before the next, starting with the
        checkpoints they hold already, so a list over two checkpoints loads each at most once.
        """

    def release_device(self) -> None:
        """Free the accelerator memory the engine's models hold, so that another model (the reward model of
        uncertainty selection) can run on the device; the next ``generate`` takes it back. Engines that keep
        nothing on a shared accelerator (CPU, a remote server) have nothing to free."""
        return None
