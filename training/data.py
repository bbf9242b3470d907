"""Preference data for reward-model training: read an export directory, tokenize, bucket, collate.

The only contract with the web app is the export directory: `manifest.json` (its schema version is
checked) and one JSONL or Parquet file per split. No Django here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from transformers import PreTrainedTokenizerBase

from preference_format import MARGIN_SCHEMES, SCHEMA_VERSION
from sampler.engines.reward import encode_text, pad_batch

SCHEMA_MISMATCH = (
    "export {path} has manifest schema version {found}; this trainer reads version {expected}: "
    "re-export the data with the current platform"
)
NOT_AN_EXPORT = "{path} is not an export directory: it has no manifest.json"
NO_SPLIT = "export {path} has no {split} split (no {split}.parquet or {split}.jsonl)"
MARGIN_MISSING = "export {path}, {split} split, row {row}: no margin, though the margin scheme is {scheme!r}"


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: the dialogue, the chosen and rejected replies, and what the annotator said."""

    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    margin: float
    strength: str
    batch: str
    safety_label: str = ""
    """A safety comparison's label (`preference_format.SAFETY_LABELS`); empty on helpfulness and imported rows."""


def read_manifest(export_dir: Path) -> dict[str, Any]:
    path = export_dir / "manifest.json"
    if not path.exists():
        raise ValueError(NOT_AN_EXPORT.format(path=export_dir))
    manifest: dict[str, Any] = json.loads(path.read_text())
    found = manifest.get("schema_version")
    if found != SCHEMA_VERSION:
        raise ValueError(SCHEMA_MISMATCH.format(path=export_dir, found=found, expected=SCHEMA_VERSION))
    return manifest


def _rows(export_dir: Path, split: str) -> Iterator[dict[str, Any]]:
    """The rows of one split's file, Parquet or JSONL."""
    parquet, jsonl = export_dir / f"{split}.parquet", export_dir / f"{split}.jsonl"
    if parquet.exists():
        for batch in pq.ParquetFile(parquet).iter_batches(batch_size=4096):
            yield from batch.to_pylist()
    elif jsonl.exists():
        with jsonl.open(encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)
    else:
        raise ValueError(NO_SPLIT.format(path=export_dir, split=split))


def has_split(export_dir: Path, split: str) -> bool:
    return (export_dir / f"{split}.parquet").exists() or (export_dir / f"{split}.jsonl").exists()


def load_pairs(export_dir: Path, split: str) -> list[PreferencePair]:
    """The pairs of one split.

    Under a margin scheme (the manifest's `margin_scheme`, "small" or "large") every row must carry its margin; an
    export made without one ("none") has margin 0 throughout, which the trainer reads as no margin. A manifest that
    names no scheme (one not written by the platform) is read by its first row: a margin there asks for one on
    every row.
    """
    scheme = read_manifest(export_dir).get("margin_scheme")
    with_margin = None if scheme is None else MARGIN_SCHEMES.get(scheme) is not None
    pairs = []
    for number, row in enumerate(_rows(export_dir, split), start=1):
        margin = row.get("margin")
        if with_margin is None:
            with_margin, scheme = "margin" in row, "given by the first row"
        if with_margin and (isinstance(margin, bool) or not isinstance(margin, int | float)):
            raise ValueError(MARGIN_MISSING.format(path=export_dir, split=split, row=number, scheme=scheme))
        pairs.append(
            PreferencePair(
                prompt=row["prompt"],
                chosen=row["chosen"][-1]["content"],
                rejected=row["rejected"][-1]["content"],
                margin=float(margin) if with_margin and margin is not None else 0.0,
                strength=row.get("strength") or "",
                batch=row.get("batch") or "",
                safety_label=row.get("safety_label") or "",
            )
        )
    return pairs


@dataclass(frozen=True)
class EncodedPair:
    chosen: list[int]
    rejected: list[int]
    margin: float

    @property
    def length(self) -> int:
        return max(len(self.chosen), len(self.rejected))


def encode_pairs(
    pairs: Sequence[PreferencePair], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> list[EncodedPair]:
    return [
        EncodedPair(
            chosen=encode_text(tokenizer, pair.prompt, pair.chosen, max_length),
            rejected=encode_text(tokenizer, pair.prompt, pair.rejected, max_length),
            margin=pair.margin,
        )
        for pair in pairs
    ]


def bucketed_order(lengths: Sequence[int], batch_size: int, seed: int, bucket_batches: int = 16) -> list[int]:
    """A shuffled order in which each run of `batch_size` indices has similar lengths (less padding).

    Indices are shuffled, cut into buckets of `bucket_batches` batches, sorted by length inside each
    bucket, and the batches are shuffled again. Deterministic for a seed, so a resumed run sees the
    same order.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    bucket = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return [index for batch in batches for index in batch]


def collate(pairs: Sequence[EncodedPair], pad_token_id: int) -> dict[str, torch.Tensor]:
    """One forward pass for a batch of n pairs: rows 0..n-1 are the chosen, rows n..2n-1 the rejected.

    input_ids, attention_mask: (2n, longest) right-padded with pad_token_id; margin: (n,).
    """
    input_ids, attention_mask = pad_batch([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_token_id)
    margin = torch.tensor([pair.margin for pair in pairs], dtype=torch.float32)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "margin": margin}
