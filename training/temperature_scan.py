"""Which sampling temperature suits rejection sampling: max reward among N samples against N (Llama 2, Figure 8).

For each temperature, `max_samples` responses are drawn per prompt and scored with R_c; the curve at N
is the best score among the first N samples, averaged over prompts. The best temperature (the highest
curve at N = max_samples) shifts as RLHF proceeds, so the scan is rerun on each new policy.
`run_temperature_scan` is the whole run from files (`python -m training.scan_cli`, and the loop's scans):
it writes `scan.json` and `temperature_scan.png` into its output directory, which appears whole or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.checkpointing import config_record, save_atomically
from training.cli import option
from training.policy import load_policy, resolve_device, training_dtype
from training.rollout import encode_prompts, generate, load_prompts
from training.scoring import PiecewiseScorer, Scorer

SCAN_FILE = "scan.json"
PLOT_FILE = "temperature_scan.png"
DEFAULT_TEMPERATURES = (0.6, 0.8, 1.0, 1.2, 1.4)
ALL_SPLITS = "all"


@dataclass
class TemperatureScanConfig:
    """A scan's settings. Fields with `option` metadata are options of `python -m training.scan_cli` (the policy,
    reward models and prompts come from `add_policy_arguments`, the temperatures from `--temperatures`)."""

    policy: Path
    reward_helpfulness: Path
    reward_safety: Path | None
    prompts: Path
    output_dir: Path = field(metadata=option("Directory for scan.json and temperature_scan.png.", flag="--output"))
    temperatures: list[float] = field(default_factory=lambda: list(DEFAULT_TEMPERATURES))
    split: str = field(
        default="test", metadata=option("Split of the prompts file: test, train or all (no test prompts: all).")
    )
    max_prompts: int = field(default=64, metadata=option("Use the first this many prompts."))
    max_samples: int = field(default=16, metadata=option("Largest N."))
    top_p: float = field(default=1.0, metadata=option("Nucleus sampling."))
    max_new_tokens: int = field(default=256, metadata=option("Longest response."))
    batch_size: int = field(default=64, metadata=option("Sequences per generate() call."))
    seed: int = field(default=0, metadata=option("Sampling seed."))
    device: str = field(default="auto", metadata=option("auto, cpu or cuda."))
    bf16: bool | None = None


def scan_prompts(config: TemperatureScanConfig) -> tuple[str, list[dict[str, Any]]]:
    """(the split used, its first `max_prompts` prompts); a file without prompts of the split falls back to all."""
    split = config.split or ALL_SPLITS
    rows = load_prompts(config.prompts, None if split == ALL_SPLITS else split)
    if not rows and split != ALL_SPLITS:
        split, rows = ALL_SPLITS, load_prompts(config.prompts)
    return split, [{"prompt": row.prompt, "is_safety": row.is_safety} for row in rows[: config.max_prompts]]


def run_temperature_scan(
    config: TemperatureScanConfig,
    *,
    scorer: Scorer | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The scan of `config.policy`, written to `config.output_dir` (scan.json, temperature_scan.png); returns it."""
    split, prompts = scan_prompts(config)
    if not prompts:
        raise ValueError(f"{config.prompts} has no prompts")
    device = str(resolve_device(config.device))
    scorer = scorer or PiecewiseScorer(config.reward_helpfulness, config.reward_safety, device=device)
    result = temperature_scan(
        config.policy,
        scorer,
        prompts,
        config.temperatures,
        config.max_samples,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        seed=config.seed,
        device=config.device,
        bf16=config.bf16,
        progress=progress,
    )
    result = {**result, "split": split, "config": config_record(config)}

    def write(directory: Path) -> None:
        (directory / SCAN_FILE).write_text(json.dumps(result, indent=2) + "\n")
        plot_temperature_scan(result, directory / PLOT_FILE)

    save_atomically(config.output_dir, write)
    return result


def temperature_scan(
    policy: Path,
    scorer: Scorer,
    prompts: list[dict[str, Any]],
    temperatures: Sequence[float],
    max_samples: int,
    *,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "auto",
    bf16: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """`prompts` are {"prompt": [messages], "is_safety": bool} dicts; returns the curves and mean scores."""
    if max_samples < 1 or not temperatures or not prompts:
        raise ValueError("a scan needs at least one prompt, one temperature and max_samples >= 1")
    resolved = resolve_device(device)
    loaded = load_policy(policy, device=resolved, dtype=training_dtype(resolved, bf16), trainable=False)
    dialogues = [row["prompt"] for row in prompts]
    is_safety = [bool(row.get("is_safety", False)) for row in prompts]
    repeated = [index for index in range(len(prompts)) for _ in range(max_samples)]
    encoded = encode_prompts(loaded, dialogues)
    curves, means = {}, {}
    for done, temperature in enumerate(temperatures):
        rollout = generate(
            loaded,
            [encoded[i] for i in repeated],
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            seed=seed,
            batch_size=batch_size,
        )
        scores = scorer.probability([dialogues[i] for i in repeated], rollout.texts, [is_safety[i] for i in repeated])
        best_so_far = [0.0] * max_samples
        for index in range(len(prompts)):
            running = float("-inf")
            for n, score in enumerate(scores[index * max_samples : (index + 1) * max_samples]):
                running = max(running, score)
                best_so_far[n] += running / len(prompts)
        curves[f"{temperature:g}"] = best_so_far
        means[f"{temperature:g}"] = sum(scores) / len(scores)
        if progress is not None:
            progress(done + 1, len(temperatures))
    best = max(curves, key=lambda t: curves[t][-1])  # ties: the first temperature given
    return {
        "policy": str(policy),
        "prompts": len(prompts),
        "max_samples": max_samples,
        "temperatures": [float(t) for t in temperatures],
        "max_reward_by_n": curves,
        "mean_reward": means,
        "best_temperature": float(best),
    }


def plot_temperature_scan(result: dict[str, Any], path: Path) -> Path:
    """Max reward among N samples against N, one line per temperature (as in Llama 2's Figure 8)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    n = range(1, result["max_samples"] + 1)
    for temperature, curve in result["max_reward_by_n"].items():
        axes.plot(n, curve, marker="o" if len(curve) <= 20 else None, label=f"T = {temperature}")
    axes.set_xlabel("N samples")
    axes.set_ylabel("max R_c among N (mean over prompts)")
    if result["max_samples"] >= 10:
        axes.set_xscale("log")
    axes.set_title(f"Reward of the best of N ({result['prompts']} prompts)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
