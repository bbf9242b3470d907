"""The Llama 2 Table 6 statistics of a preference dataset, counted as rows stream by. No Django here."""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WHITESPACE = "whitespace"


def whitespace_tokens(text: str) -> int:
    """`len(text.split())`, without building the list when the text is ASCII words between single spaces."""
    # The ASCII whitespace that str.split() knows besides the space; any of them, a non-ASCII character
    # (there is Unicode whitespace) or a run of spaces takes the exact slow path.
    if (
        text.isascii()
        and "\n" not in text
        and "\t" not in text
        and "\r" not in text
        and "\x0b" not in text
        and "\x0c" not in text
        and "\x1c" not in text
        and "\x1d" not in text
        and "\x1e" not in text
        and "\x1f" not in text
        and "  " not in text
    ):
        if not text or text == " ":
            return 0
        return text.count(" ") + 1 - (text[0] == " ") - (text[-1] == " ")
    return len(text.split())


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
    by: dict[str, Counter[str]] = field(
        default_factory=lambda: {key: Counter() for key in ("split", "focus", "strength", "safety_label", "source")}
    )

    def add(self, row: dict[str, Any]) -> None:
        count = self.count_tokens
        turns = tokens = 0
        for message in row["prompt"]:
            turns += message["role"] == "user"
            tokens += count(message["content"])
        self.rows += 1
        self.turns += turns
        self.prompt_tokens += tokens
        self.response_tokens += (count(row["chosen"][0]["content"]) + count(row["rejected"][0]["content"])) // 2
        by = self.by
        by["split"][row["split"]] += 1
        by["focus"]["safety" if row["is_safety"] else "helpfulness"] += 1
        by["strength"][row["strength"] or "unknown"] += 1
        by["safety_label"][row["safety_label"] or "none"] += 1
        by["source"][row["source"]] += 1

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
