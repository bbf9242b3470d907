"""`python -m training.reward_cli`: train a reward model on an export directory, with a progress bar.

Under `torchrun --nproc_per_node N python -m training.reward_cli ...` it trains data-parallel.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

from tqdm import tqdm

from training.cli import add_config_arguments, config_from_arguments
from training.reward_trainer import RewardTrainingConfig, train_reward_model


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.reward_cli",
        description="Train a Llama 2 style reward model (binary ranking loss with margin) on an export directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(p, RewardTrainingConfig)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    config = config_from_arguments(RewardTrainingConfig, parser().parse_args(argv))
    main_process = int(os.environ.get("RANK", "0")) == 0
    with tqdm(desc="reward model", unit="step", disable=not main_process) as bar:

        def progress(step: int, total: int, entry: dict[str, float]) -> None:
            bar.total = total
            bar.n = step
            bar.set_postfix(loss=f"{entry['train/loss']:.4f}", acc=f"{entry['train/accuracy']:.2f}")

        metrics = train_reward_model(config, progress=progress)
    if main_process and "eval" in metrics:
        keys = ("accuracy", "by_strength", "by_safety_label", "without_safety_label")
        print(json.dumps({key: metrics["eval"][key] for key in keys}))
    return metrics


if __name__ == "__main__":
    main()
