"""`python -m training.scan_cli`: max reward among N samples against N, per temperature (Llama 2, Figure 8)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.cli import add_policy_arguments
from training.policy import resolve_device
from training.rollout import load_prompts
from training.scoring import PiecewiseScorer
from training.temperature_scan import plot_temperature_scan, temperature_scan


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.scan_cli",
        description="Scan sampling temperatures for rejection sampling: the best R_c among N samples against N.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_policy_arguments(p, policy_help="Policy directory to sample from.")
    p.add_argument("--split", default="test", help="Which split of the prompts file to use (empty: all).")
    p.add_argument("--max-prompts", type=int, default=64, help="Use the first this many prompts.")
    p.add_argument("--temperatures", default="0.6,0.8,1.0,1.2,1.4", help="Comma-separated temperatures.")
    p.add_argument("--max-samples", type=int, default=16, help="Largest N.")
    p.add_argument("--top-p", type=float, default=1.0, help="Nucleus sampling.")
    p.add_argument("--max-new-tokens", type=int, default=256, help="Longest response.")
    p.add_argument("--batch-size", type=int, default=64, help="Sequences per generate() call.")
    p.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    p.add_argument("--output", type=Path, required=True, help="Directory for scan.json and temperature_scan.png.")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    rows = load_prompts(args.prompts, args.split or None)[: args.max_prompts]
    if not rows:
        raise SystemExit(f"{args.prompts} has no prompts in split {args.split!r}")
    temperatures = [float(value) for value in args.temperatures.split(",")]
    scorer = PiecewiseScorer(args.reward_helpfulness, args.reward_safety, device=str(resolve_device(args.device)))
    with tqdm(desc="temperature scan", unit="temperature", total=len(temperatures)) as bar:

        def progress(done: int, total: int) -> None:
            bar.n = done
            bar.refresh()

        result = temperature_scan(
            args.policy,
            scorer,
            [{"prompt": row.prompt, "is_safety": row.is_safety} for row in rows],
            temperatures,
            args.max_samples,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            progress=progress,
        )
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "scan.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_temperature_scan(result, args.output / "temperature_scan.png")
    print(json.dumps({"best_temperature": result["best_temperature"], "mean_reward": result["mean_reward"]}))
    return result


if __name__ == "__main__":
    main()
