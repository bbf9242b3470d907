"""The figures a policy run writes into its output directory: PPO's training curves, rejection sampling's scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.rejection_sampling import BestSample

CURVES = (
    ("rollout/score", "R_c (rollout)"),
    ("eval/heldout_reward", "R_c (held-out)"),
    ("ppo/kl", "KL to reference (per response)"),
    ("ppo/entropy", "entropy (per token)"),
    ("rollout/response_length", "response length (tokens)"),
    ("rollout/eos_rate", "EOS rate"),
    ("ppo/explained_variance", "explained variance"),
    ("ppo/clipfrac", "clip fraction"),
)


def plot_ppo_curves(log: Sequence[dict[str, float]], evaluations: Sequence[dict[str, float]], path: Path) -> Path:
    """One panel per diagnostic against the iteration; held-out reward from iteration 0 (the starting policy)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(2, 4, figsize=(16, 7))
    for axis, (key, title) in zip(axes.flat, CURVES, strict=True):
        source = evaluations if key == "eval/heldout_reward" else log
        points = [(entry["iteration"], entry[key]) for entry in source if key in entry]
        if points:
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, marker="o" if len(points) < 30 else None)
        axis.set_title(title)
        axis.set_xlabel("iteration")
    figure.suptitle("PPO")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_rejection_sampling(
    samples: Sequence[BestSample], log: Sequence[dict[str, float]], path: Path, *, from_earlier: int = 0
) -> Path:
    """Scores of all samples against the kept ones, and the SFT loss (`from_earlier`: how many of the fine-tuning
    examples came from earlier iterations' samples)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (scores, loss) = plt.subplots(1, 2, figsize=(11, 4))
    all_scores = [score for sample in samples for score in sample.scores]
    bins = [i / 20 for i in range(21)]
    scores.hist(all_scores, bins=bins, alpha=0.6, label=f"all samples (mean {sum(all_scores) / len(all_scores):.3f})")
    best = [sample.score for sample in samples]
    scores.hist(best, bins=bins, alpha=0.6, label=f"best of K (mean {sum(best) / len(best):.3f})")
    scores.set_xlabel("R_c")
    scores.set_ylabel("responses")
    scores.set_title("Reward of the samples")
    scores.legend()
    loss.plot([entry["step"] for entry in log], [entry["sft/loss"] for entry in log])
    loss.set_xlabel("step")
    loss.set_ylabel("loss on response tokens")
    loss.set_title(f"Fine-tuning on the best samples ({from_earlier} from earlier iterations)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
