"""The Llama 2 Table 6 statistics of a preference dataset, counted as rows stream by. No Django here."""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.batches.words import whitespace_tokens

WHITESPACE = "whitespace"


def token_counter(tokenizer: str) -> tuple[str, Callable[[str], int]]:
    """(name, count function): 'whitespace' splits on whitespace; anything else is a Hugging Face tokenizer path."""
    if tokenizer == WHITESPACE:
        return WHITESPACE, whitespace_tokens
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(tokenizer)
    return tokenizer, lambda text: len(loaded(text, add_special_tokens=False)["input_ids"])


@dataclass
class DatasetStatistics:
    """Counts by split, focus, strength and safety label, and Table 6's averages."""

    count_tokens: Callable[[str], int]
    tokenizer: str
    rows: int = 0
    turns: int = 0
    prompt_tokens: int = 0
    response_tokens: int = 0
    # Rows by (split, focus, strength, safety label, source): one count per row, not five.
    kinds: Counter[tuple[str, str, str, str, str]] = field(default_factory=Counter)
    # Names of the batches whose rows were counted (imported open-source rows have none).
    batches: set[str] = field(default_factory=set)

    def add(self, row: dict[str, Any], words: tuple[int, int, int] | None = None) -> None:
        """Count a row. `words`: its whitespace word counts as stored (prompt with its context, chosen, rejected),
        taken instead of counting the text again when this counts whitespace tokens."""
        turns = 0
        for message in row["prompt"]:
            turns += message["role"] == "user"
        if words is None or self.tokenizer != WHITESPACE:
            count = self.count_tokens
            words = (
                sum(count(message["content"]) for message in row["prompt"]),
                count(row["chosen"][0]["content"]),
                count(row["rejected"][0]["content"]),
            )
        prompt, chosen, rejected = words
        self.rows += 1
        self.batches.add(row["batch"])
        self.turns += turns
        self.prompt_tokens += prompt
        self.response_tokens += (chosen + rejected) // 2
        self.kinds[
            (
                row["split"],
                "safety" if row["is_safety"] else "helpfulness",
                row["strength"] or "unknown",
                row["safety_label"] or "none",
                row["source"],
            )
        ] += 1

    def as_dict(self) -> dict[str, Any]:
        def mean(total: int) -> float:
            return round(total / self.rows, 2) if self.rows else 0.0

        keys = ("split", "focus", "strength", "safety_label", "source")
        by: dict[str, Counter[str]] = {key: Counter() for key in keys}
        # Each split's rows by focus and by strength: what a reader checks before trusting a test-set figure.
        within: dict[str, dict[str, Counter[str]]] = {}
        for kind, rows in self.kinds.items():
            for counter, value in zip(by.values(), kind, strict=True):
                counter[value] += rows
            split, focus, strength = kind[:3]
            split_counts = within.setdefault(split, {"focus": Counter(), "strength": Counter()})
            split_counts["focus"][focus] += rows
            split_counts["strength"][strength] += rows
        return {
            "counts": {
                "total": self.rows,
                **{key: dict(sorted(c.items())) for key, c in by.items()},
                "by_split": {
                    split: {key: dict(sorted(c.items())) for key, c in counts.items()}
                    for split, counts in sorted(within.items())
                },
            },
            "table6": {
                "comparisons": self.rows,
                "avg_turns_per_dialogue": mean(self.turns),
                "avg_tokens_per_example": mean(self.prompt_tokens + self.response_tokens),
                "avg_tokens_in_prompt": mean(self.prompt_tokens),
                "avg_tokens_in_response": mean(self.response_tokens),
                "tokenizer": self.tokenizer,
            },
        }
