"""Reward-model evaluation the way Llama 2 reports it (Table 8): accuracy by strength level, plus calibration.

Accuracy is also split by safety label (each with its count and a 95% Wilson interval): a safety model that ranks
"one safe, one unsafe" pairs well but "both unsafe" pairs at chance shows it there. Writes the figures as JSON, a
Markdown report beside the paper's numbers, and PNG plots.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from preference_format import SAFETY_LABELS, STRENGTHS
from sampler.engines.reward import score_sequences
from training.data import EncodedPair, PreferencePair, encode_pairs
from training.intervals import wilson_interval

STRENGTH_TITLES = tuple(strength.label for strength in STRENGTHS)
SAFETY_LABEL_TITLES = tuple(label.label for label in SAFETY_LABELS)
# Llama 2, Table 8: accuracy per preference rating on each model's own test set.
PAPER_TABLE8: dict[str, dict[str, float]] = {
    "safety": {**dict(zip(STRENGTHS, (94.3, 76.3, 65.7, 55.3), strict=True)), "avg": 64.5},
    "helpfulness": {**dict(zip(STRENGTHS, (80.7, 67.5, 60.9, 54.7), strict=True)), "avg": 63.2},
}
CALIBRATION_EDGES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, float("inf"))


def score_pairs(
    model: PreTrainedModel, pairs: Sequence[EncodedPair], pad_token_id: int, batch_size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of the chosen and of the rejected reply of every pair."""
    scores = score_sequences(model, [p.chosen for p in pairs] + [p.rejected for p in pairs], pad_token_id, batch_size)
    return scores[: len(pairs)], scores[len(pairs) :]


def _accuracy(hits: list[bool]) -> float | None:
    return round(100.0 * sum(hits) / len(hits), 1) if hits else None


def accuracy_with_interval(hits: list[bool]) -> dict[str, Any]:
    """Pairs, accuracy (%) and its 95% Wilson interval (%); accuracy and bounds are None without pairs."""
    low, high = wilson_interval(sum(hits), len(hits))
    return {
        "pairs": len(hits),
        "accuracy": _accuracy(hits),
        "low": round(100.0 * low, 1) if hits else None,
        "high": round(100.0 * high, 1) if hits else None,
    }


def accuracy_report(pairs: Sequence[PreferencePair], chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, Any]:
    """Accuracy overall, per strength level, per safety label, per batch; calibration by score difference.

    `by_safety_label` always holds the three labels of the vocabulary; pairs without one (helpfulness comparisons,
    imported data) are counted apart, under `without_safety_label`, rather than mixed into any label.
    """
    hits = (chosen > rejected).tolist()
    by_strength: dict[str, list[bool]] = defaultdict(list)
    by_safety_label: dict[str, list[bool]] = defaultdict(list)
    by_batch: dict[str, list[bool]] = defaultdict(list)
    for pair, hit in zip(pairs, hits, strict=True):
        by_strength[pair.strength or "unknown"].append(hit)
        by_safety_label[pair.safety_label if pair.safety_label in SAFETY_LABELS else ""].append(hit)
        by_batch[pair.batch or "external"].append(hit)
    differences = (chosen - rejected).abs().tolist()
    calibration = []
    for low, high in pairwise(CALIBRATION_EDGES):
        inside = [hit for hit, d in zip(hits, differences, strict=True) if low <= d < high]
        upper = None if high == float("inf") else high  # JSON has no infinity: an open last bin
        calibration.append({"from": low, "to": upper, "pairs": len(inside), "human_agrees": _accuracy(inside)})
    return {
        "pairs": len(hits),
        "accuracy": _accuracy(hits),
        "by_strength": {level: _accuracy(by_strength.get(level, [])) for level in STRENGTHS},
        "by_strength_pairs": {level: len(by_strength.get(level, [])) for level in STRENGTHS},
        "by_safety_label": {label: accuracy_with_interval(by_safety_label.get(label, [])) for label in SAFETY_LABELS},
        "without_safety_label": accuracy_with_interval(by_safety_label.get("", [])),
        "by_batch": {batch: _accuracy(batch_hits) for batch, batch_hits in sorted(by_batch.items())},
        "calibration": calibration,
    }


def evaluate_reward_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    test_pairs: Sequence[PreferencePair],
    output_dir: Path,
    max_length: int,
    log: Sequence[dict[str, float]] = (),
    focus: str = "helpfulness",
) -> dict[str, Any]:
    """Score the test split, write eval.json, report.md and the plots; return the figures."""
    encoded = encode_pairs(test_pairs, tokenizer, max_length)
    chosen, rejected = score_pairs(model, encoded, tokenizer.pad_token_id or 0)
    report = accuracy_report(test_pairs, chosen, rejected)
    (output_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / "report.md").write_text(table8_markdown(report, focus))
    plot_reward_model(report, log, output_dir, focus)
    return report


def table8_markdown(report: dict[str, Any], focus: str) -> str:
    paper = PAPER_TABLE8[focus if focus in PAPER_TABLE8 else "helpfulness"]
    head = "| | " + " | ".join(STRENGTH_TITLES) + " | Avg |\n|---|" + "---|" * 5 + "\n"

    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    ours = "| this model | " + " | ".join(cell(report["by_strength"][s]) for s in STRENGTHS)
    ours += f" | {cell(report['accuracy'])} |\n"
    theirs = f"| Llama 2 {focus} RM (paper, Table 8) | " + " | ".join(f"{paper[s]:.1f}" for s in STRENGTHS)
    theirs += f" | {paper['avg']:.1f} |\n"
    pairs = "| test pairs | " + " | ".join(str(report["by_strength_pairs"][s]) for s in STRENGTHS)
    pairs += f" | {report['pairs']} |\n"
    return f"# Reward model accuracy by preference rating\n\n{head}{ours}{theirs}{pairs}\n{_safety_markdown(report)}"


def _safety_markdown(report: dict[str, Any]) -> str:
    """Accuracy by safety label with 95% Wilson intervals, and the unlabelled pairs on their own line."""
    rows = [(label.label, report["by_safety_label"][label]) for label in SAFETY_LABELS]
    rows.append(("no safety label", report["without_safety_label"]))
    lines = [
        "# Reward model accuracy by safety label\n",
        "| | accuracy | 95% interval | test pairs |",
        "|---|---|---|---|",
    ]
    for title, figures in rows:
        if figures["pairs"]:
            lines.append(
                f"| {title} | {figures['accuracy']:.1f} | {figures['low']:.1f}-{figures['high']:.1f} |"
                f" {figures['pairs']} |"
            )
        else:
            lines.append(f"| {title} | n/a | n/a | 0 |")
    return "\n".join(lines) + "\n"


def plot_reward_model(report: dict[str, Any], log: Sequence[dict[str, float]], output_dir: Path, focus: str) -> None:
    """accuracy_by_strength.png (ours beside the paper), accuracy_by_safety_label.png (when the test split has
    labelled pairs), calibration.png and loss.png."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    paper = PAPER_TABLE8[focus if focus in PAPER_TABLE8 else "helpfulness"]
    figure, axes = plt.subplots(figsize=(8, 4))
    positions = range(len(STRENGTHS))
    ours = [report["by_strength"][s] or 0 for s in STRENGTHS]
    axes.bar([p - 0.2 for p in positions], ours, width=0.4, label="this model")
    axes.bar([p + 0.2 for p in positions], [paper[s] for s in STRENGTHS], width=0.4, label="Llama 2 (paper)")
    axes.set_xticks(list(positions), [t.replace(" / ", "/\n") for t in STRENGTH_TITLES])
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 115)  # headroom for the legend above 100%
    axes.axhline(50, color="grey", linewidth=0.8, linestyle=":")
    axes.set_title(f"Reward model accuracy by preference rating ({focus})")
    axes.legend(loc="upper right", ncols=2)
    figure.tight_layout()
    figure.savefig(output_dir / "accuracy_by_strength.png", dpi=100)
    plt.close(figure)
    if any(report["by_safety_label"][label]["pairs"] for label in SAFETY_LABELS):
        _plot_by_safety_label(report, output_dir, focus)

    figure, axes = plt.subplots(figsize=(6, 4))
    bins = [b for b in report["calibration"] if b["pairs"]]
    labels = [f"{b['from']:g}-{b['to']:g}" if b["to"] is not None else f"{b['from']:g}+" for b in bins]
    axes.plot(labels, [b["human_agrees"] for b in bins], marker="o")
    axes.set_xlabel("|reward difference|")
    axes.set_ylabel("humans prefer the higher-scored side (%)")
    axes.set_ylim(0, 100)
    axes.set_title("Calibration")
    figure.tight_layout()
    figure.savefig(output_dir / "calibration.png", dpi=100)
    plt.close(figure)

    if log:
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.plot([e["step"] for e in log], [e["train/loss"] for e in log])
        axes.set_xlabel("step")
        axes.set_ylabel("train/loss")
        axes.set_title("Training loss")
        figure.tight_layout()
        figure.savefig(output_dir / "loss.png", dpi=100)
        plt.close(figure)


def _plot_by_safety_label(report: dict[str, Any], output_dir: Path, focus: str) -> None:
    """accuracy_by_safety_label.png: one bar per label with its 95% Wilson interval and its count."""
    from matplotlib import pyplot as plt

    figures = [report["by_safety_label"][label] for label in SAFETY_LABELS]
    accuracy = [f["accuracy"] or 0 for f in figures]
    below = [f["accuracy"] - f["low"] if f["pairs"] else 0 for f in figures]
    above = [f["high"] - f["accuracy"] if f["pairs"] else 0 for f in figures]
    figure, axes = plt.subplots(figsize=(8, 4))
    positions = list(range(len(SAFETY_LABELS)))
    axes.bar(positions, accuracy, width=0.5, yerr=[below, above], capsize=6, label="this model (95% interval)")
    titles = [title.replace(", ", ",\n") for title in SAFETY_LABEL_TITLES]
    ticks = [f"{title}\n(n={f['pairs']})" for title, f in zip(titles, figures, strict=True)]
    axes.set_xticks(positions, ticks)
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 115)
    axes.axhline(50, color="grey", linewidth=0.8, linestyle=":")
    axes.set_title(f"Reward model accuracy by safety label ({focus})")
    axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(output_dir / "accuracy_by_safety_label.png", dpi=100)
    plt.close(figure)
