"""The vllm engine's mapping to vLLM's API; vLLM itself lives only in the GPU image."""

import importlib.util

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
