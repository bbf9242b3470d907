"""`python -m training.ppo_cli`: PPO on a policy with the Llama 2 piecewise reward, with a progress bar.

Under `torchrun --nproc_per_node N python -m training.ppo_cli ...` it trains data-parallel (`--fsdp`: sharded).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from training.cli import add_config_arguments, add_policy_arguments, config_from_arguments
from training.ppo import PPOConfig, train_ppo


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.ppo_cli",
        description="PPO on a Hugging Face policy (Llama 2, 3.2.3): reward whiten(logit(R_c)) - beta * KL.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_policy_arguments(p, policy_help="Policy directory (also the frozen reference).")
    add_config_arguments(p, PPOConfig)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = config_from_arguments(PPOConfig, parser().parse_args(argv))
    main_process = int(os.environ.get("RANK", "0")) == 0
    with tqdm(desc="PPO", unit="iteration", disable=not main_process) as bar:

        def progress(step: int, total: int, entry: dict[str, float]) -> None:
            bar.total = total
            bar.n = step
            bar.set_postfix(score=f"{entry['rollout/score']:.3f}", kl=f"{entry['ppo/kl']:.3f}")

        metrics = train_ppo(config, progress=progress)
    summary = ("heldout_reward_before", "heldout_reward_after", "iterations_run", "stopped_early", "value_init")
    if main_process:
        print(json.dumps({key: metrics[key] for key in summary if key in metrics}))
    return metrics


if __name__ == "__main__":
    main()
