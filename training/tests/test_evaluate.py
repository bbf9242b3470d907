"""Reward-model evaluation split by safety label: each label's accuracy, count and 95% Wilson interval."""

import json

import pytest
import torch

from preference_format import SAFETY_LABELS, SafetyLabel
from training.data import PreferencePair
from training.evaluate import accuracy_report
from training.intervals import wilson_interval
from training.reward_trainer import train_reward_model
from training.tests.synthetic import write_export
from training.tests.test_reward_trainer import config


def _pair(label: str) -> PreferencePair:
    prompt = [{"role": "user", "content": "q"}]
    return PreferencePair(prompt, "a", "b", 0.0, "better", "b1", safety_label=label)


def test_accuracy_by_safety_label_counts_each_label_with_its_wilson_interval():
    labels = ["both_safe"] * 4 + ["chosen_safe_other_unsafe"] * 2 + [""] * 3
    hits = [True, True, True, False, True, True, False, False, True]
    chosen = torch.tensor([1.0 if hit else -1.0 for hit in hits])
    report = accuracy_report([_pair(label) for label in labels], chosen, torch.zeros(len(hits)))

    assert list(report["by_safety_label"]) == list(SAFETY_LABELS)
    both_safe = report["by_safety_label"][SafetyLabel.BOTH_SAFE]
    low, high = wilson_interval(3, 4)
    assert both_safe == {"pairs": 4, "accuracy": 75.0, "low": round(100 * low, 1), "high": round(100 * high, 1)}
    one_safe = report["by_safety_label"][SafetyLabel.CHOSEN_SAFE_OTHER_UNSAFE]
    assert (one_safe["pairs"], one_safe["accuracy"], one_safe["high"]) == (2, 100.0, 100.0)
    assert report["by_safety_label"][SafetyLabel.BOTH_UNSAFE] == {
        "pairs": 0,
        "accuracy": None,
        "low": None,
        "high": None,
    }
    # Helpfulness rows carry no label: counted on their own, in no label's figures.
    assert report["without_safety_label"]["pairs"] == 3
    assert report["without_safety_label"]["accuracy"] == pytest.approx(33.3)
    assert report["pairs"] == 9 and report["accuracy"] == pytest.approx(66.7)


def test_a_tiny_reward_model_shows_the_label_it_gets_wrong(tiny_backbone, tmp_path):
    """Trained on "polite beats noise" everywhere, tested where the both-unsafe pairs are the other way round:
    overall accuracy hides it, the both-unsafe figure does not."""
    labels = [label.value for label in SAFETY_LABELS] + [""]
    export = write_export(tmp_path / "export", train=256, test=64, safety_labels=labels)
    test_file = export / "test.jsonl"
    rows = [json.loads(line) for line in test_file.read_text().splitlines()]
    for row in rows:
        if row["safety_label"] == SafetyLabel.BOTH_UNSAFE:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
    test_file.write_text("".join(json.dumps(row) + "\n" for row in rows))

    output = tmp_path / "rm"
    figures = train_reward_model(config(export, tiny_backbone, output))["eval"]

    by_label = figures["by_safety_label"]
    assert {label: by_label[label]["pairs"] for label in SAFETY_LABELS} == dict.fromkeys(SAFETY_LABELS, 16)
    assert figures["without_safety_label"]["pairs"] == 16
    assert by_label[SafetyLabel.BOTH_SAFE]["accuracy"] > 90
    assert by_label[SafetyLabel.CHOSEN_SAFE_OTHER_UNSAFE]["accuracy"] > 90
    unsafe = by_label[SafetyLabel.BOTH_UNSAFE]
    assert unsafe["accuracy"] < 10 and unsafe["high"] < 50 <= by_label[SafetyLabel.BOTH_SAFE]["low"]
    for figure in (*by_label.values(), figures["without_safety_label"]):
        assert figure["low"] <= figure["accuracy"] <= figure["high"]
    # The same figures in metrics.json and report.md, and drawn beside accuracy by strength.
    assert json.loads((output / "metrics.json").read_text())["eval"]["by_safety_label"] == json.loads(
        json.dumps(by_label)
    )
    report = (output / "report.md").read_text()
    assert "Reward model accuracy by safety label" in report and "| Both are unsafe |" in report
    assert (output / "accuracy_by_safety_label.png").read_bytes().startswith(b"\x89PNG")


def test_no_safety_plot_without_labelled_pairs(tiny_backbone, tmp_path):
    export = write_export(tmp_path / "export", train=16, test=8)
    output = tmp_path / "rm"
    figures = train_reward_model(config(export, tiny_backbone, output, epochs=1))["eval"]
    assert figures["without_safety_label"]["pairs"] == 8
    assert all(figures["by_safety_label"][label]["pairs"] == 0 for label in SAFETY_LABELS)
    assert (output / "accuracy_by_strength.png").exists() and not (output / "accuracy_by_safety_label.png").exists()
