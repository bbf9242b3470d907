"""The openai engine against a real OpenAI-compatible server: llama.cpp serving the SmolLM2 GGUF on CPU."""

import pytest

from sampler.engines import EngineError, GenerationRequest, get_engine
from sampler.engines.openai_engine import OpenAIEngine, chat_completion_body
from tests.llama_server import free_port, llama_server

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    with llama_server(tmp_path_factory.mktemp("llama-server")) as server:
        yield server.base_url


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
