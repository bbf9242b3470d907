"""Generation engines: one interface over transformers (CPU/GPU), vLLM and OpenAI-compatible servers.

Pure Python and PyTorch, no web framework: ``training/`` uses these engines too. Pick one by name with ``get_engine``.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from sampler.engines.base import (
    CHECKPOINT_LOAD_FAILED,
    ChatMessage,
    Engine,
    EngineError,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    Provenance,
)

UNKNOWN_ENGINE = "unknown engine {name!r}; known engines: {known}"

ENGINES: dict[str, str] = {
    "transformers": "sampler.engines.transformers_engine:TransformersEngine",
    "vllm": "sampler.engines.vllm_engine:VllmEngine",
    "openai": "sampler.engines.openai_engine:OpenAIEngine",
}
"""Engine name -> ``module:Class``. Imported lazily, so an engine's heavy dependencies (vLLM) load only when used."""

_instances: dict[tuple[str, tuple[tuple[str, Any], ...]], Engine] = {}
_instances_lock = threading.Lock()


def get_engine(name: str, **options: Any) -> Engine:
    """Return the process-wide engine for ``name`` built with ``options`` (keyword arguments of its class).

    The same name and options give the same instance, so models an engine has loaded stay loaded across
    calls (a Celery worker process keeps its models between tasks). Options must be hashable.
    """
    try:
        target = ENGINES[name]
    except KeyError:
        raise EngineError(UNKNOWN_ENGINE.format(name=name, known=", ".join(sorted(ENGINES)))) from None
    key = (name, tuple(sorted(options.items())))
    with _instances_lock:
        engine = _instances.get(key)
        if engine is None:
            module_name, class_name = target.split(":")
            engine_class = getattr(importlib.import_module(module_name), class_name)
            engine = _instances[key] = engine_class(**options)
    return engine


__all__ = [
    "CHECKPOINT_LOAD_FAILED",
    "ENGINES",
    "UNKNOWN_ENGINE",
    "ChatMessage",
    "Engine",
    "EngineError",
    "FinishReason",
    "GenerationRequest",
    "GenerationResult",
    "Provenance",
    "get_engine",
]
