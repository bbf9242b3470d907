"""The engine contract: request validation, the engine registry, batch seeds."""

from __future__ import annotations

import pytest

from sampler.engines import ENGINES, UNKNOWN_ENGINE, EngineError, GenerationRequest, get_engine
from sampler.engines.transformers_engine import TransformersEngine, batch_seed

MESSAGES = [{"role": "user", "content": "Hello"}]


def test_request_defaults_are_valid():
    request = GenerationRequest(messages=MESSAGES, checkpoint="/models/a")
    assert (request.temperature, request.top_p, request.seed) == (1.0, 1.0, None)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("messages", [], "messages must not be empty"),
        ("temperature", -0.1, "temperature -0.1 is negative"),
        ("top_p", 0.0, "top_p 0.0 is outside (0, 1]"),
        ("top_p", 1.5, "top_p 1.5 is outside (0, 1]"),
        ("max_new_tokens", 0, "max_new_tokens 0 is below 1"),
    ],
)
def test_invalid_requests_are_refused(field, value, reason):
    fields = {"messages": MESSAGES, "checkpoint": "/models/a", field: value}
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        GenerationRequest(**fields)


def test_unknown_engine_names_the_known_ones():
    with pytest.raises(EngineError) as error:
        get_engine("nope")
    assert str(error.value) == UNKNOWN_ENGINE.format(name="nope", known=", ".join(sorted(ENGINES)))


def test_get_engine_shares_one_instance_per_name_and_options():
    engine = get_engine("transformers", device="cpu", batch_size=3)
    assert isinstance(engine, TransformersEngine)
    assert engine.batch_size == 3
    assert get_engine("transformers", batch_size=3, device="cpu") is engine
    assert get_engine("transformers", device="cpu", batch_size=4) is not engine


def test_batch_seed_is_deterministic_and_order_sensitive():
    assert batch_seed([None, None]) is None
    assert batch_seed([1, 2]) == batch_seed([1, 2])
    assert batch_seed([1, 2]) != batch_seed([2, 1])
    assert batch_seed([1, None]) != batch_seed([1, 2])
