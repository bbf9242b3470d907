"""The prompts JSONL that policy runs read: the iteration's batch prompts, with held-out ones as the test split."""

import json
from collections.abc import Sequence
from pathlib import Path

from backend.batches.models import Comparison
from backend.batches.selectors import prompt_messages


def prompts_file_write(*, batch_ids: Sequence[int], path: Path) -> dict[str, int]:
    """Write one line per distinct prompt of the batches' comparisons; returns the count per split.

    Each line: {"prompt": dialogue so far + the prompt as messages, "is_safety": from the prompt's tag,
    "split": "test" for prompts of held-out comparisons, else "train"}. Written whole, then renamed.
    """
    comparisons = (
        Comparison.objects.filter(batch_id__in=batch_ids).select_related("prompt__dialogue").order_by("prompt_id", "id")
    )
    held_out: dict[int, bool] = {}
    prompts = {}
    for comparison in comparisons:
        prompts[comparison.prompt_id] = comparison.prompt
        held_out[comparison.prompt_id] = held_out.get(comparison.prompt_id, False) or comparison.is_held_out
    counts = {"train": 0, "test": 0}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for prompt_id, prompt in prompts.items():
            split = "test" if held_out[prompt_id] else "train"
            counts[split] += 1
            line = {"prompt": prompt_messages(prompt=prompt), "is_safety": prompt.is_safety, "split": split}
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    partial.rename(path)
    return counts
