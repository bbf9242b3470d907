"""A client for any OpenAI-compatible chat server: `vllm serve`, llama.cpp's server, and others.

Requests go out concurrently (up to `concurrency` at once) so a server with continuous batching
(vLLM) batches them itself; the results come back in request order. This is the scale-out path: one
server per checkpoint (`vllm serve DIR --generation-config vllm`), each request sent to the server the
checkpoint registry names for it (`GenerationRequest.endpoint`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from preference_format import FinishReason, Reproducibility
from sampler.engines.base import (
    CHECKPOINT_LOAD_FAILED,
    Engine,
    EngineError,
    GenerationRequest,
    GenerationResult,
    Provenance,
)

SERVER_UNREACHABLE = "the OpenAI-compatible server at {base_url} did not answer: {reason}"
SERVER_REFUSED = "the OpenAI-compatible server at {base_url} refused the request ({status}): {body}"
NO_SERVER = "no OpenAI-compatible server is named for checkpoint {checkpoint}: register its serving_url"
UNKNOWN_FINISH = "the OpenAI-compatible server at {base_url} gave an unknown finish reason {reason!r}"


class OpenAIEngine(Engine):
    """Chat completions over HTTP.

    `base_url`: the server for requests that name no `endpoint` of their own; empty means every request must.
    `model`: the served model name for requests that name no `served_model` (a server that serves one model,
    such as llama.cpp's); when None too, the request's `checkpoint` is sent as the model name (`vllm serve
    <dir>` serves a model under its directory path, or under `--served-model-name`).

    Provenance: the engine version is the server's (vLLM's `GET /version`, asked once per server), or
    "unknown"; a remote server's texts are never taken as reproducible (vLLM's docs: online serving
    reproduces only in batch-invariant mode, which a client cannot see).
    """

    def __init__(
        self,
        *,
        base_url: str = "",
        api_key: str = "",
        model: str | None = None,
        concurrency: int = 16,
        timeout_seconds: float = 300.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.concurrency = concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.Client(headers=headers, timeout=timeout_seconds, limits=limits)
        self._versions: dict[str, str] = {}
        self._versions_lock = threading.Lock()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._complete, requests))

    def _complete(self, request: GenerationRequest) -> GenerationResult:
        base_url = (request.endpoint or self.base_url).rstrip("/")
        if not base_url:
            raise EngineError(NO_SERVER.format(checkpoint=request.checkpoint))
        model = request.served_model or self.model
        started = time.perf_counter()
        try:
            reply = self._client.post(f"{base_url}/chat/completions", json=chat_completion_body(request, model))
        except httpx.HTTPError as error:
            raise EngineError(SERVER_UNREACHABLE.format(base_url=base_url, reason=error)) from error
        if reply.status_code == 404:
            reason = f"the server does not serve it ({reply.text[:200]})"
            raise EngineError(CHECKPOINT_LOAD_FAILED.format(checkpoint=request.checkpoint, reason=reason))
        if reply.status_code >= 400:
            raise EngineError(SERVER_REFUSED.format(base_url=base_url, status=reply.status_code, body=reply.text[:300]))
        provenance = Provenance(
            engine="openai",
            engine_version=self._server_version(base_url),
            device=base_url,
            dtype="",
            reproducibility=Reproducibility.NONE,
        )
        latency_ms = (time.perf_counter() - started) * 1000
        return result_from_completion(reply.json(), latency_ms=latency_ms, provenance=provenance, base_url=base_url)

    def _server_version(self, base_url: str) -> str:
        """The server's own version where it says (vLLM serves GET /version at its root), else "unknown"."""
        with self._versions_lock:
            if base_url not in self._versions:
                root = base_url.removesuffix("/v1")
                try:
                    reply = self._client.get(f"{root}/version", timeout=5)
                    version = reply.json().get("version") if reply.status_code == 200 else None
                except (httpx.HTTPError, ValueError, AttributeError):
                    version = None
                self._versions[base_url] = f"vllm {version}" if isinstance(version, str) else "unknown"
            return self._versions[base_url]


def chat_completion_body(request: GenerationRequest, model: str | None) -> dict[str, Any]:
    """The /v1/chat/completions body for one request."""
    body: dict[str, Any] = {
        "model": model or request.checkpoint,
        "messages": [dict(message) for message in request.messages],
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_new_tokens,
        "n": 1,
        "stream": False,
    }
    if request.seed is not None:
        body["seed"] = request.seed
    return body


def result_from_completion(
    completion: dict[str, Any], *, latency_ms: float, provenance: Provenance, base_url: str = ""
) -> GenerationResult:
    """A GenerationResult from a chat completion, its finish reason as the server gave it."""
    choice = completion["choices"][0]
    usage = completion.get("usage") or {}
    reason = choice.get("finish_reason")
    try:
        finish = FinishReason.ABORT if reason is None else FinishReason(reason)
    except ValueError:
        raise EngineError(UNKNOWN_FINISH.format(base_url=base_url, reason=reason)) from None
    return GenerationResult(
        text=(choice.get("message") or {}).get("content") or "",
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        finish_reason=finish,
        latency_ms=latency_ms,
        provenance=provenance,
    )
