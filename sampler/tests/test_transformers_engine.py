"""The transformers engine on tiny random checkpoints: order, padding, finish reasons, seeds, loading, cache."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoTokenizer

from sampler.engines import CHECKPOINT_LOAD_FAILED, EngineError, GenerationRequest
from sampler.engines.chatml import IM_END
from sampler.engines.tiny import PAD, build_tiny_checkpoint, build_tiny_tokenizer
from sampler.engines.transformers_engine import TransformersEngine, pad_token_id

PROMPTS = [
    "Hi",
    "What is the capital of France? Please answer in one short sentence.",
    "Write a poem",
    "x",
    "Tell me about the quick brown fox and the lazy dog, and why the fox jumps over it every single day.",
    "2 + 2 = ?",
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """Tiny checkpoints: a plain random one, one that never stops, one that always stops at once, one in between."""
    root = tmp_path_factory.mktemp("tiny")
    return {
        "random": str(build_tiny_checkpoint(root / "random", seed=1)),
        "never_eos": str(build_tiny_checkpoint(root / "never_eos", seed=2, eos_boost=-50.0)),
        "always_eos": str(build_tiny_checkpoint(root / "always_eos", seed=3, eos_boost=50.0)),
        "often_eos": str(build_tiny_checkpoint(root / "often_eos", seed=4, eos_boost=4.0)),
    }


def requests_for(checkpoint: str, **options) -> list[GenerationRequest]:
    return [
        GenerationRequest(messages=[{"role": "user", "content": prompt}], checkpoint=checkpoint, **options)
        for prompt in PROMPTS
    ]


def chat_token_count(checkpoint: str, prompt: str) -> int:
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_results_come_back_in_request_order(checkpoints):
    budgets = [3, 5, 3, 5, 3, 4]  # three groups, sorted by prompt length inside and cut into batches of 2
    temperatures = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    requests = [
        GenerationRequest(
            messages=[{"role": "user", "content": prompt}],
            checkpoint=checkpoints["never_eos"],
            temperature=temperature,
            max_new_tokens=budget,
            seed=index,
        )
        for index, (prompt, budget, temperature) in enumerate(zip(PROMPTS, budgets, temperatures, strict=True))
    ]
    results = TransformersEngine(device="cpu", batch_size=2).generate(requests)
    assert [result.completion_tokens for result in results] == budgets
    assert [result.prompt_tokens for result in results] == [
        chat_token_count(checkpoints["never_eos"], prompt) for prompt in PROMPTS
    ]


def test_greedy_batched_equals_one_at_a_time(checkpoints):
    """Left padding must not change what a prompt generates: the key property of batched generation."""
    requests = requests_for(checkpoints["random"], temperature=0.0, max_new_tokens=24)
    batched = TransformersEngine(device="cpu", batch_size=8).generate(requests)
    alone = TransformersEngine(device="cpu", batch_size=1)
    single = [alone.generate([request])[0] for request in requests]
    assert len({result.prompt_tokens for result in batched}) > 1, "prompts of one length would need no padding"
    assert [(r.text, r.completion_tokens, r.finish_reason) for r in batched] == [
        (r.text, r.completion_tokens, r.finish_reason) for r in single
    ]


def test_budget_exhausted_without_eos_finishes_with_length(checkpoints):
    results = TransformersEngine(device="cpu").generate(
        requests_for(checkpoints["never_eos"], max_new_tokens=7, seed=0)
    )
    assert all(result.finish_reason == "length" for result in results)
    assert all(result.completion_tokens == 7 for result in results)
    assert all(result.text for result in results)


def test_eos_finishes_with_stop_and_counts_the_eos(checkpoints):
    for temperature in (0.0, 1.0):
        requests = requests_for(checkpoints["always_eos"], temperature=temperature, max_new_tokens=8, seed=0)
        results = TransformersEngine(device="cpu").generate(requests)
        assert [(r.text, r.completion_tokens, r.finish_reason) for r in results] == [("", 1, "stop")] * len(PROMPTS)


def test_completions_stop_at_their_own_eos_in_a_batch(checkpoints):
    """Finished rows are padded while others go on; each counts only its own tokens through EOS."""
    requests = requests_for(checkpoints["often_eos"], temperature=1.0, max_new_tokens=12, seed=5)
    results = TransformersEngine(device="cpu", batch_size=8).generate(requests)
    stopped = [result for result in results if result.finish_reason == "stop"]
    assert stopped, "with a boost of 4 most completions stop within 12 tokens"
    assert len({result.completion_tokens for result in stopped}) > 1
    assert all(1 <= result.completion_tokens <= 12 for result in stopped)
    assert all(result.completion_tokens == 12 for result in results if result.finish_reason == "length")
    for result in stopped:
        assert PAD not in result.text and IM_END not in result.text


def test_same_seeds_reproduce_and_other_seeds_differ(checkpoints):
    def texts(seed: int, engine: TransformersEngine) -> list[str]:
        requests = [
            GenerationRequest(
                messages=request.messages,
                checkpoint=request.checkpoint,
                temperature=1.0,
                top_p=0.9,
                max_new_tokens=16,
                seed=seed + index,
            )
            for index, request in enumerate(requests_for(checkpoints["never_eos"]))
        ]
        return [result.text for result in engine.generate(requests)]

    first = texts(0, TransformersEngine(device="cpu"))
    assert texts(0, TransformersEngine(device="cpu")) == first
    assert texts(100, TransformersEngine(device="cpu")) != first


def test_seeded_generation_leaves_the_global_rng_alone(checkpoints):
    rng_state = torch.random.get_rng_state()
    TransformersEngine(device="cpu").generate(
        requests_for(checkpoints["random"], temperature=1.0, max_new_tokens=4, seed=7)
    )
    assert torch.equal(torch.random.get_rng_state(), rng_state)


def test_missing_checkpoint_names_the_path(tmp_path):
    missing = str(tmp_path / "no-such-checkpoint")
    with pytest.raises(EngineError) as error:
        TransformersEngine(device="cpu").generate(requests_for(missing)[:1])
    assert str(error.value) == CHECKPOINT_LOAD_FAILED.format(checkpoint=missing, reason="no such directory")


def test_broken_checkpoint_reports_path_and_reason_and_does_not_poison_the_cache(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    engine = TransformersEngine(device="cpu")
    with pytest.raises(EngineError) as error:
        engine.generate(requests_for(str(broken))[:1])
    assert str(error.value).startswith(f"could not load checkpoint {broken}: ")
    assert engine.loaded_checkpoints == []

    shutil.rmtree(broken)
    build_tiny_checkpoint(broken)
    [result] = engine.generate(requests_for(str(broken), max_new_tokens=2)[:1])
    assert result.completion_tokens >= 1
    assert engine.loaded_checkpoints == [str(broken.resolve())]


def test_checkpoint_without_chat_template_is_refused(tmp_path):
    checkpoint = build_tiny_checkpoint(tmp_path / "no-template")
    (checkpoint / "chat_template.jinja").unlink()
    with pytest.raises(EngineError, match="tokenizer has no chat template"):
        TransformersEngine(device="cpu").generate(requests_for(str(checkpoint))[:1])


def test_loaded_models_stay_within_the_lru_bound(tmp_path):
    paths = {name: build_tiny_checkpoint(tmp_path / name, seed=index) for index, name in enumerate("abc")}
    engine = TransformersEngine(device="cpu", max_loaded_models=2)
    for name in "abac":
        engine.generate(requests_for(str(paths[name]), max_new_tokens=1)[:1])
    assert engine.loaded_checkpoints == [str(paths["a"].resolve()), str(paths["c"].resolve())]


def test_pad_is_distinct_from_eos_when_the_vocabulary_allows():
    tokenizer = build_tiny_tokenizer()
    eos = (tokenizer.eos_token_id,)
    assert pad_token_id(tokenizer, eos) == tokenizer.convert_tokens_to_ids(PAD)
    tokenizer.pad_token = IM_END  # the GGUF SmolLM2 tokenizer pads with EOS
    assert pad_token_id(tokenizer, eos) == tokenizer.convert_tokens_to_ids(PAD)


def test_pad_falls_back_to_eos_when_nothing_else_fits():
    tokenizer = build_tiny_tokenizer()
    eos = (tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)
    assert pad_token_id(tokenizer, eos) == tokenizer.eos_token_id
