"""The vLLM image that docker-compose.yml pins reads the checkpoints that training/ writes.

training/ saves with transformers 5 (requirements.txt); the sampler image reads with the transformers
inside vLLM's image. A checkpoint is saved here as a policy run saves one (load_policy, then save_policy
into RunFiles.finish), and its config files are checked against `READERS`: what each vLLM release's
image accepts. The entries were checked by loading such a checkpoint (config, tokenizer, generation
config, weights) with the transformers release named in each, and against vLLM's model registry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from sampler.engines.tiny import build_tiny_checkpoint
from tests.test_docker_compose import REPO, dockerfile_instructions, pins
from training.checkpointing import RunFiles
from training.policy import load_policy, save_policy

SAMPLER_DOCKERFILE = REPO / "docker" / "sampler.Dockerfile"
GPU_REQUIREMENTS = REPO / "requirements-gpu.txt"
VLLM_IMAGE = re.compile(r"^vllm/vllm-openai:v(?P<version>[\w.]+)$")

_TOKENIZERS_V4 = frozenset(
    {
        "PreTrainedTokenizerFast",
        "LlamaTokenizer",
        "LlamaTokenizerFast",
        "GPT2Tokenizer",
        "GPT2TokenizerFast",
        "Qwen2Tokenizer",
        "Qwen2TokenizerFast",
        "GemmaTokenizer",
        "GemmaTokenizerFast",
    }
)
_POLICY_ARCHITECTURES = frozenset(
    {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Gemma2ForCausalLM"}
)


@dataclass(frozen=True)
class Reader:
    """What one vLLM release's image reads in a checkpoint directory."""

    transformers: str
    """The lowest transformers release that vLLM release runs with, as its image may hold it."""
    tokenizer_classes: frozenset[str]
    """`tokenizer_class` values of tokenizer_config.json that this transformers resolves."""
    extra_special_tokens_as_list: bool
    """transformers 5 writes `extra_special_tokens` as a list; transformers 4 reads only a mapping."""
    architectures: frozenset[str]
    """Policy architectures vLLM's model registry has, of those this project trains (SmolLM2 is a Llama)."""

    @property
    def major(self) -> int:
        return Version(self.transformers).major


READERS = {
    # The first release on transformers 5: it requires transformers >= 4.56, excluding 5.0 to 5.5.0.
    "0.19.1": Reader(
        transformers="5.5.1",
        tokenizer_classes=_TOKENIZERS_V4 | {"TokenizersBackend"},
        extra_special_tokens_as_list=True,
        architectures=_POLICY_ARCHITECTURES,
    ),
    # The release pinned before, on transformers 4: AutoTokenizer refuses "TokenizersBackend".
    "0.11.0": Reader(
        transformers="4.56.0",
        tokenizer_classes=_TOKENIZERS_V4,
        extra_special_tokens_as_list=False,
        architectures=_POLICY_ARCHITECTURES,
    ),
}


def pinned_vllm() -> str:
    """The vLLM release of the sampler image (its FROM line)."""
    image = next(args[0] for instruction, args in dockerfile_instructions(SAMPLER_DOCKERFILE) if instruction == "FROM")
    match = VLLM_IMAGE.match(image)
    assert match, f"{SAMPLER_DOCKERFILE.name} is not built FROM vllm/vllm-openai:vX.Y.Z but {image!r}"
    return match["version"]


def requirement(path: Path, name: str) -> SpecifierSet:
    """The version specifiers of `name` in a requirements file."""
    for line in path.read_text().splitlines():
        found = re.match(rf"^{re.escape(name)}\s*(?P<spec>[<>=!~][^#]*)", line.split("#", 1)[0].strip())
        if found:
            return SpecifierSet(found["spec"].strip())
    raise AssertionError(f"{path.name} does not name {name}")


def read_json(path: Path) -> dict:
    assert path.is_file(), f"{path.name} is missing"
    data: dict = json.loads(path.read_text())
    return data


def unreadable(checkpoint: Path, reader: Reader) -> list[str]:
    """Why `reader` would refuse or misread `checkpoint`; empty when it reads it as written."""
    problems = []
    config = read_json(checkpoint / "config.json")
    written_by = Version(config["transformers_version"])
    if written_by.major > reader.major:
        problems.append(f"config.json is written by transformers {written_by}, the image reads {reader.major}.x")
    if not set(config.get("architectures") or ()) <= reader.architectures:
        problems.append(f"vLLM has no model for {config.get('architectures')}")
    tokenizer = read_json(checkpoint / "tokenizer_config.json")
    if tokenizer.get("tokenizer_class") not in reader.tokenizer_classes:
        problems.append(f"transformers {reader.major} has no tokenizer class {tokenizer.get('tokenizer_class')!r}")
    if isinstance(tokenizer.get("extra_special_tokens"), list) and not reader.extra_special_tokens_as_list:
        problems.append(f"transformers {reader.major} reads extra_special_tokens only as a mapping")
    generation_file = checkpoint / "generation_config.json"
    if not generation_file.is_file():
        problems.append("generation_config.json is missing: vLLM takes the stop tokens from it")
    else:
        eos = read_json(generation_file).get("eos_token_id")
        if config.get("eos_token_id") not in (eos if isinstance(eos, list) else [eos]):
            problems.append(f"generation_config.json stops at {eos}, the model's EOS is {config.get('eos_token_id')}")
    return problems


@pytest.fixture(scope="module")
def saved_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A policy directory as PPO and rejection sampling write one."""
    root = tmp_path_factory.mktemp("policy")
    policy = load_policy(build_tiny_checkpoint(root / "base"), device=torch.device("cpu"), dtype=torch.float32)
    output = root / "policy-run00001"
    RunFiles(output).finish(lambda directory: save_policy(policy, directory))
    return output


def test_the_image_requirements_and_table_name_one_vllm() -> None:
    version = pinned_vllm()
    assert pins(GPU_REQUIREMENTS).get("vllm") == version, f"requirements-gpu.txt must pin vllm=={version}"
    assert version in READERS, f"vLLM {version}: add what its image reads to READERS (checked by hand)"


def test_the_image_holds_the_transformers_major_that_training_writes_with() -> None:
    reader = READERS[pinned_vllm()]
    training = Version(pins(REPO / "requirements.txt")["transformers"])
    image = requirement(GPU_REQUIREMENTS, "transformers")
    assert reader.transformers in image and f"{reader.major + 1}.0" not in image, (
        f"requirements-gpu.txt must hold transformers to >={reader.transformers},<{reader.major + 1}, not {image}"
    )
    assert reader.major == training.major, f"training writes with transformers {training}, the image reads {reader}"


def test_the_pinned_vllm_reads_a_policy_that_training_saved(saved_policy: Path) -> None:
    assert unreadable(saved_policy, READERS[pinned_vllm()]) == []


def test_the_previous_pin_could_not(saved_policy: Path) -> None:
    problems = unreadable(saved_policy, READERS["0.11.0"])
    assert any("config.json is written by transformers 5" in p for p in problems), problems
    assert any("'TokenizersBackend'" in p for p in problems), problems


def test_the_trainer_image_is_built_on_the_same_vllm_release() -> None:
    """PPO and rejection sampling generate with vLLM (--rollout-engine vllm) in the trainer image too."""
    trainer = REPO / "docker" / "trainer.Dockerfile"
    image = next(args[0] for instruction, args in dockerfile_instructions(trainer) if instruction == "FROM")
    assert image == f"vllm/vllm-openai:v{pinned_vllm()}"
