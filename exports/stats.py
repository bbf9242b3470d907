"""The Llama 2 Table 6 statistics of a preference dataset, counted as rows stream by. No Django here."""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WHITESPACE = "whitespace"


def token_counter(tokenizer: str) -> tuple[str, Callable[[str], int]]:
    """(name, count function): 'whitespace' splits on spaces; anything else is a Hugging Face tokenizer path."""
    if tokenizer == WHITESPACE:
        return WHITESPACE, lambda text: len(text.split())
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
    by: dict[str, Counter[str]] = field(
        default_factory=lambda: {key: Counter() for key in ("split", "focus", "strength", "safety_label", "source")}
    )

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        self.turns += sum(1 for message in row["prompt"] if message["role"] == "user")
        self.prompt_tokens += sum(self.count_tokens(message["content"]) for message in row["prompt"])
        self.response_tokens += (
            self.count_tokens(row["chosen"][0]["content"]) + self.count_tokens(row["rejected"][0]["content"])
        ) // 2
        self.by["split"][row["split"]] += 1
        self.by["focus"]["safety" if row["is_safety"] else "helpfulness"] += 1
        self.by["strength"][row["strength"] or "unknown"] += 1
        self.by["safety_label"][row["safety_label"] or "none"] += 1
        self.by["source"][row["source"]] += 1

    def as_dict(self) -> dict[str, Any]:
        def mean(total: int) -> float:
            return round(total / self.rows, 2) if self.rows else 0.0

        return {
            "counts": {"total": self.rows, **{key: dict(sorted(c.items())) for key, c in self.by.items()}},
            "table6": {
                "comparisons": self.rows,
                "avg_turns_per_dialogue": mean(self.turns),
                "avg_tokens_per_example": mean(self.prompt_tokens + self.response_tokens),
                "avg_tokens_in_prompt": mean(self.prompt_tokens),
                "avg_tokens_in_response": mean(self.response_tokens),
                "tokenizer": self.tokenizer,
            },
        }
