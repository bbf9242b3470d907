"""Which sampling temperature suits rejection sampling: max reward among N samples against N (Llama 2, Figure 8).

For each temperature, `max_samples` responses are drawn per prompt and scored with R_c; the curve at N
is the best score among the first N samples, averaged over prompts. The best temperature shifts as
RLHF proceeds, so the scan is rerun on each new policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training.policy import load_policy, resolve_device, training_dtype
from training.rollout import encode_prompts, generate
from training.scoring import Scorer


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
    best = max(curves, key=lambda t: curves[t][-1])
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
