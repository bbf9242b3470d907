"""Synthetic export directories, in the format exports/ writes, for training tests."""

import json
import random
from collections.abc import Sequence
from pathlib import Path

from preference_format import MARGIN_SCHEMES, STRENGTHS

GOOD = ["a helpful honest answer", "the capital of France is Paris", "thank you, a good answer"]
SMALL = MARGIN_SCHEMES["small"] or {}
BAD = ["x = y + z * 2 lazy", "dog dog dog", "1 2 3 4 5 6 7"]


def write_export(
    directory: Path,
    *,
    train: int,
    test: int,
    seed: int = 0,
    schema_version: int = 1,
    safety_labels: Sequence[str] = (),
) -> Path:
    """An export whose preference is learnable: chosen replies are polite sentences, rejected are noise.

    With `safety_labels`, row i carries label i % len(safety_labels) ("" for none), as a safety export does."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("test", test)):
        with (directory / f"{split}.jsonl").open("w") as handle:
            for i in range(count):
                strength = STRENGTHS[i % 4]
                row = {
                    "prompt": [{"role": "user", "content": f"Question {rng.randint(0, 99)}: what is good?"}],
                    "chosen": [{"role": "assistant", "content": rng.choice(GOOD)}],
                    "rejected": [{"role": "assistant", "content": rng.choice(BAD)}],
                    "margin": SMALL[strength],
                    "strength": strength,
                    "batch": "synthetic",
                    "split": split,
                }
                if safety_labels:
                    row["safety_label"] = safety_labels[i % len(safety_labels)] or None
                handle.write(json.dumps(row) + "\n")
    (directory / "manifest.json").write_text(
        json.dumps(
            {
                "schema_version": schema_version,
                "export_id": 0,
                "filters": {"focus": "helpfulness"},
                "margin_scheme": "small",
            }
        )
    )
    return directory
