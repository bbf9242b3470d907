"""`python -m training.reward_cli`: train a reward model on an export directory, with a progress bar.

Under `torchrun --nproc_per_node N python -m training.reward_cli ...` it trains data-parallel.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from training.reward_trainer import RewardTrainingConfig, train_reward_model


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.reward_cli",
        description="Train a Llama 2 style reward model (binary ranking loss with margin) on an export directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--export", type=Path, required=True, help="Export directory (manifest.json + train/test files).")
    p.add_argument("--backbone", type=Path, required=True, help="Hugging Face model directory to start from.")
    p.add_argument("--output", type=Path, required=True, help="Where to write the reward model directory.")
    p.add_argument("--learning-rate", type=float, default=1e-5, help="Peak learning rate.")
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="Cosine decay floor, as a fraction of the peak.")
    p.add_argument("--warmup-ratio", type=float, default=0.03, help="Warm-up share of the steps.")
    p.add_argument("--min-warmup-steps", type=int, default=5, help="Shortest warm-up, in steps.")
    p.add_argument("--batch-size", type=int, default=512, help="Pairs per optimizer step, across all processes.")
    p.add_argument("--micro-batch-size", type=int, default=8, help="Pairs per forward pass in one process.")
    p.add_argument("--max-length", type=int, default=512, help="Tokens per (dialogue, reply); the end is kept.")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay.")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="Gradient clipping norm.")
    p.add_argument("--epochs", type=int, default=1, help="Passes over the train split (Llama 2: 1).")
    p.add_argument("--no-margin", action="store_true", help="Ignore the export's margin column.")
    p.add_argument("--seed", type=int, default=0, help="Head initialisation and data order.")
    p.add_argument("--checkpoint-every", type=int, default=50, help="Steps between resumable checkpoints.")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    p.add_argument("--fsdp", action="store_true", help="Under torchrun: shard the model (FSDP2) instead of DDP.")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto", help="bf16 weights (auto: on GPU only).")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    args = parser().parse_args(argv)
    config = RewardTrainingConfig(
        export_dir=args.export,
        backbone=args.backbone,
        output_dir=args.output,
        learning_rate=args.learning_rate,
        min_lr_ratio=args.min_lr_ratio,
        warmup_ratio=args.warmup_ratio,
        min_warmup_steps=args.min_warmup_steps,
        batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size,
        max_length=args.max_length,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        epochs=args.epochs,
        use_margin=not args.no_margin,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        bf16=None if args.bf16 == "auto" else args.bf16 == "on",
        fsdp=args.fsdp,
    )
    main_process = int(os.environ.get("RANK", "0")) == 0
    with tqdm(desc="reward model", unit="step", disable=not main_process) as bar:

        def progress(step: int, total: int, entry: dict[str, float]) -> None:
            bar.total = total
            bar.n = step
            bar.set_postfix(loss=f"{entry['train/loss']:.4f}", acc=f"{entry['train/accuracy']:.2f}")

        metrics = train_reward_model(config, progress=progress)
    if main_process and "eval" in metrics:
        print(json.dumps({"accuracy": metrics["eval"]["accuracy"], "by_strength": metrics["eval"]["by_strength"]}))
    return metrics


if __name__ == "__main__":
    main()
