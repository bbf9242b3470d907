"""The vllm engine's mapping to vLLM's API; vLLM itself lives only in the GPU image."""

import importlib.util
import os
import sys
from types import ModuleType, SimpleNamespace

import pytest

from sampler.engines import EngineError, GenerationRequest
from sampler.engines.vllm_engine import VLLM_MISSING, VllmEngine, sampling_params

QUESTION = [{"role": "user", "content": "Hi"}]


def test_sampling_params_carry_the_request():
    request = GenerationRequest(QUESTION, checkpoint="/m", temperature=0.6, top_p=0.95, max_new_tokens=77, seed=3)
    assert sampling_params(request) == {"temperature": 0.6, "top_p": 0.95, "max_tokens": 77, "seed": 3, "n": 1}


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_the_engine_says_so():
    with pytest.raises(EngineError, match=VLLM_MISSING.split(":")[0]):
        VllmEngine()


class FakeLLM:
    """What VllmEngine uses of `vllm.LLM`, recording calls: vLLM itself only runs in the GPU image."""

    def __init__(self, log: list[str], model: str, **options: object) -> None:
        self.log, self.model, self.options = log, model, options
        log.append(f"build {model}")

    def chat(self, conversations, sampling_params, use_tqdm):
        self.log.append(f"chat {self.model} x{len(conversations)}")
        reasons = [p["finish"] for p in sampling_params]
        return [
            SimpleNamespace(
                prompt_token_ids=[1, 2, 3], outputs=[SimpleNamespace(text="ok", token_ids=[7], finish_reason=r)]
            )
            for r in reasons
        ]

    def sleep(self, level: int) -> None:
        self.log.append(f"sleep {self.model} level {level}")

    def wake_up(self) -> None:
        self.log.append(f"wake {self.model}")

    def shutdown(self) -> None:
        self.log.append(f"shutdown {self.model}")


@pytest.fixture
def fake_vllm(monkeypatch) -> list[str]:
    log: list[str] = []
    module = ModuleType("vllm")
    module.__version__ = "0.19.1"  # type: ignore[attr-defined]
    module.LLM = lambda model, **options: FakeLLM(log, model, **options)  # type: ignore[attr-defined]
    # The fake finishes each request the way its top_p asks, so a test can ask for every finish reason.
    finishes = {0.91: "stop", 0.92: "length", 0.93: "abort", 0.94: None}
    module.SamplingParams = lambda **p: {**p, "finish": finishes.get(p["top_p"], "stop")}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    return log


def ask(checkpoint: str, top_p: float = 1.0, seed: int | None = 1) -> GenerationRequest:
    return GenerationRequest(QUESTION, checkpoint=checkpoint, temperature=0.7, top_p=top_p, seed=seed)


def test_switching_checkpoints_sleeps_and_wakes_rather_than_rebuilding(fake_vllm):
    engine = VllmEngine(max_loaded_models=2)
    engine.generate([ask("/a"), ask("/b"), ask("/a")])
    engine.generate([ask("/a"), ask("/b")])  # b is awake: it goes first, then a wakes
    assert fake_vllm == [
        "build /a",
        "chat /a x2",
        "sleep /a level 1",
        "build /b",
        "chat /b x1",
        "chat /b x1",
        "sleep /b level 1",
        "wake /a",
        "chat /a x1",
    ]
    assert engine.llm_options["enable_sleep_mode"] is True


def test_past_its_limit_the_engine_shuts_the_oldest_down_explicitly(fake_vllm):
    engine = VllmEngine(max_loaded_models=1)
    engine.generate([ask("/a")])
    engine.generate([ask("/b")])
    assert fake_vllm == ["build /a", "chat /a x1", "shutdown /a", "build /b", "chat /b x1"]
    assert engine.llm_options["enable_sleep_mode"] is False


def test_release_device_puts_the_awake_engine_to_sleep(fake_vllm):
    engine = VllmEngine()
    engine.generate([ask("/a")])
    engine.release_device()
    engine.generate([ask("/a")])
    assert fake_vllm[2:] == ["sleep /a level 1", "wake /a", "chat /a x1"]


def test_finish_reasons_are_kept_as_vllm_gives_them(fake_vllm):
    results = VllmEngine().generate([ask("/a", top_p=p) for p in (0.91, 0.92, 0.93, 0.94)])
    assert [r.finish_reason for r in results] == ["stop", "length", "abort", "abort"]


def test_provenance_says_vllm_does_not_reproduce_unless_asked(fake_vllm, monkeypatch):
    (plain,) = VllmEngine().generate([ask("/a")])
    assert plain.provenance.engine == "vllm" and plain.provenance.engine_version == "vllm 0.19.1"
    assert plain.provenance.dtype == "bfloat16" and plain.provenance.reproducibility == "none"
    engine = VllmEngine(reproducible=True)
    assert os.environ["VLLM_BATCH_INVARIANT"] == "1"
    seeded, unseeded = engine.generate([ask("/b"), ask("/b", seed=None)])
    assert seeded.provenance.reproducibility == "request" and unseeded.provenance.reproducibility == "none"
