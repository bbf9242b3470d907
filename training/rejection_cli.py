"""`python -m training.rejection_cli`: rejection-sampling fine-tuning (best of K, then SFT), with a progress bar.

Under `torchrun --nproc_per_node N python -m training.rejection_cli ...` it samples and fine-tunes data-parallel.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.cli import add_config_arguments, add_policy_arguments, config_from_arguments
from training.rejection_sampling import RejectionSamplingConfig, train_rejection_sampling


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.rejection_cli",
        description="Rejection sampling (Llama 2, 3.2.3): K samples per prompt, keep the best by R_c, fine-tune on it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_policy_arguments(p, policy_help="Policy directory to sample from and fine-tune.")
    p.add_argument(
        "--earlier-samples",
        type=Path,
        nargs="*",
        default=[],
        metavar="FILE",
        help="Earlier iterations' best_samples.jsonl: their samples for the same prompts join the pool.",
    )
    add_config_arguments(p, RejectionSamplingConfig)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = config_from_arguments(RejectionSamplingConfig, parser().parse_args(argv))
    main_process = int(os.environ.get("RANK", "0")) == 0
    with tqdm(desc="fine-tuning on the best samples", unit="step", disable=not main_process) as bar:

        def progress(step: int, total: int, entry: dict[str, float]) -> None:
            bar.total = total
            bar.n = step
            bar.set_postfix(loss=f"{entry['sft/loss']:.4f}")

        metrics = train_rejection_sampling(config, progress=progress)
    shown = ("prompts", "mean_best_score", "mean_sample_score", "from_earlier_iterations")
    if main_process and "prompts" in metrics:
        print(json.dumps({key: metrics[key] for key in shown}))
    return metrics


if __name__ == "__main__":
    main()
