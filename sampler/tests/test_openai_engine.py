"""The openai engine against a real OpenAI-compatible server: llama.cpp serving the SmolLM2 GGUF on CPU."""

import socket
import subprocess
import sys
import time

import httpx
import pytest

from sampler.engines import EngineError, GenerationRequest, get_engine
from sampler.engines.openai_engine import OpenAIEngine, chat_completion_body
from sampler.engines.smollm2 import smollm2_gguf_path

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is in requirements-dev.txt")
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path())]
    command += ["--chat_format", "chatml", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    # The server logs a lot: to a file, so a full pipe never stalls it.
    server = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"llama.cpp server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("llama.cpp server did not come up in 120 s")
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def engine(server_url) -> OpenAIEngine:
    return OpenAIEngine(base_url=server_url, model="smollm2", concurrency=4)


def test_real_text_comes_back_with_token_counts(engine):
    (result,) = engine.generate([GenerationRequest(QUESTION, checkpoint="smollm2", temperature=0, max_new_tokens=32)])
    assert "Paris" in result.text
    assert result.prompt_tokens > 5 and 0 < result.completion_tokens <= 32
    assert result.finish_reason in ("stop", "length") and result.latency_ms > 0


def test_concurrent_requests_return_in_request_order(engine):
    questions = ["Name a colour.", "Name a fruit.", "Name an animal.", "Name a country.", "Name a number."]
    requests = [
        GenerationRequest([{"role": "user", "content": q}], checkpoint="smollm2", temperature=0, max_new_tokens=12)
        for q in questions
    ]
    concurrent = engine.generate(requests)
    one_by_one = [engine.generate([request])[0] for request in requests]
    assert [r.text for r in concurrent] == [r.text for r in one_by_one]


def test_a_short_budget_is_reported_as_truncation(engine):
    long_ask = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
    (result,) = engine.generate([GenerationRequest(long_ask, checkpoint="smollm2", temperature=0, max_new_tokens=4)])
    assert result.finish_reason == "length" and result.completion_tokens == 4


def test_an_unreachable_server_is_a_clear_engine_error():
    engine = get_engine("openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(EngineError, match="did not answer"):
        engine.generate([GenerationRequest(QUESTION, checkpoint="x", max_new_tokens=4)])


def test_the_request_body_carries_every_sampling_parameter():
    request = GenerationRequest(QUESTION, checkpoint="/ckpt/policy-w48", temperature=0.8, top_p=0.9, seed=7)
    body = chat_completion_body(request, model=None)
    assert body["model"] == "/ckpt/policy-w48" and body["seed"] == 7
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.8, 0.9, 256)
