"""A client for any OpenAI-compatible chat server: `vllm serve`, llama.cpp's server, and others.

Requests go out concurrently (up to `concurrency` at once) so a server with continuous batching
(vLLM) batches them itself; the results come back in request order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from sampler.engines.base import CHECKPOINT_LOAD_FAILED, Engine, EngineError, GenerationRequest, GenerationResult

SERVER_UNREACHABLE = "the OpenAI-compatible server at {base_url} did not answer: {reason}"
SERVER_REFUSED = "the OpenAI-compatible server at {base_url} refused the request ({status}): {body}"


class OpenAIEngine(Engine):
    """Chat completions over HTTP.

    `model`: the served model name to use for every request (a server that serves one model, such as
    llama.cpp's); when None, each request's `checkpoint` is sent as the model name (`vllm serve <dir>`
    serves a model under its directory path, or under `--served-model-name`).
    """

    def __init__(
        self,
        *,
        base_url: str,
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

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._complete, requests))

    def _complete(self, request: GenerationRequest) -> GenerationResult:
        started = time.perf_counter()
        try:
            reply = self._client.post(
                f"{self.base_url}/chat/completions", json=chat_completion_body(request, self.model)
            )
        except httpx.HTTPError as error:
            raise EngineError(SERVER_UNREACHABLE.format(base_url=self.base_url, reason=error)) from error
        if reply.status_code == 404:
            reason = f"the server does not serve it ({reply.text[:200]})"
            raise EngineError(CHECKPOINT_LOAD_FAILED.format(checkpoint=request.checkpoint, reason=reason))
        if reply.status_code >= 400:
            raise EngineError(
                SERVER_REFUSED.format(base_url=self.base_url, status=reply.status_code, body=reply.text[:300])
            )
        return result_from_completion(reply.json(), latency_ms=(time.perf_counter() - started) * 1000)


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


def result_from_completion(completion: dict[str, Any], *, latency_ms: float) -> GenerationResult:
    """A GenerationResult from a chat completion; any finish other than 'length' counts as a stop."""
    choice = completion["choices"][0]
    usage = completion.get("usage") or {}
    return GenerationResult(
        text=(choice.get("message") or {}).get("content") or "",
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        latency_ms=latency_ms,
    )
