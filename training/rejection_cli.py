"""`python -m training.rejection_cli`: rejection-sampling fine-tuning (best of K, then SFT), with a progress bar."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.cli import add_policy_arguments
from training.rejection_sampling import RejectionSamplingConfig, train_rejection_sampling


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.rejection_cli",
        description="Rejection sampling (Llama 2, 3.2.3): K samples per prompt, keep the best by R_c, fine-tune on it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_policy_arguments(p, policy_help="Policy directory to sample from and fine-tune.")
    p.add_argument("--output", type=Path, required=True, help="Where to write the fine-tuned policy directory.")
    p.add_argument("--samples-per-prompt", type=int, default=4, help="K, samples drawn per prompt.")
    p.add_argument("--temperature", type=float, default=1.0, help="Sampling temperature.")
    p.add_argument("--top-p", type=float, default=1.0, help="Nucleus sampling.")
    p.add_argument("--max-new-tokens", type=int, default=256, help="Longest response.")
    p.add_argument("--generation-batch-size", type=int, default=64, help="Sequences per generate() call.")
    p.add_argument("--learning-rate", type=float, default=1e-5, help="Peak fine-tuning learning rate.")
    p.add_argument("--epochs", type=int, default=1, help="Passes over the best samples.")
    p.add_argument("--batch-size", type=int, default=64, help="Examples per optimizer step.")
    p.add_argument("--micro-batch-size", type=int, default=8, help="Examples per forward pass.")
    p.add_argument("--max-length", type=int, default=1024, help="Tokens per (prompt, response).")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay.")
    p.add_argument("--seed", type=int, default=0, help="Sampling and data order.")
    p.add_argument("--checkpoint-every", type=int, default=50, help="Steps between resumable checkpoints.")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    p.add_argument(
        "--bf16", choices=["auto", "on", "off"], default="auto", help="bf16 compute, fp32 weights (auto: on GPU only)."
    )
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    config = RejectionSamplingConfig(
        policy=args.policy,
        reward_helpfulness=args.reward_helpfulness,
        reward_safety=args.reward_safety,
        prompts=args.prompts,
        output_dir=args.output,
        samples_per_prompt=args.samples_per_prompt,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        generation_batch_size=args.generation_batch_size,
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size,
        max_length=args.max_length,
        weight_decay=args.weight_decay,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        bf16=None if args.bf16 == "auto" else args.bf16 == "on",
    )
    with tqdm(desc="fine-tuning on the best samples", unit="step") as bar:

        def progress(step: int, total: int, entry: dict[str, float]) -> None:
            bar.total = total
            bar.n = step
            bar.set_postfix(loss=f"{entry['sft/loss']:.4f}")

        metrics = train_rejection_sampling(config, progress=progress)
    print(json.dumps({key: metrics[key] for key in ("prompts", "mean_best_score", "mean_sample_score")}))
    return metrics


if __name__ == "__main__":
    main()
