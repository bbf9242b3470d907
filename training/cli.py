"""Command-line pieces shared by the policy CLIs (rejection sampling, PPO, temperature scan)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_policy_arguments(p: argparse.ArgumentParser, *, policy_help: str) -> None:
    """--policy, the two reward models and --prompts: what every policy CLI samples from and scores with."""
    p.add_argument("--policy", type=Path, required=True, help=policy_help)
    p.add_argument("--reward-helpfulness", type=Path, required=True, help="Helpfulness reward-model directory.")
    p.add_argument("--reward-safety", type=Path, help="Safety reward-model directory (default: helpfulness only).")
    p.add_argument("--prompts", type=Path, required=True, help="JSONL: prompt (messages), is_safety, split.")
