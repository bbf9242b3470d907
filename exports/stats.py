"""The Llama 2 Table 6 statistics of a preference dataset, counted as rows stream by. No Django here."""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WHITESPACE = "whitespace"


# The ASCII characters that str.split() splits on, as b" "; every other byte as b"a". A word starts at each
# b" a" and at a leading b"a".
_WORD_MARKS = bytes(32 if byte in (*range(9, 14), *range(28, 33)) else 97 for byte in range(256))


def whitespace_tokens(text: str) -> int:
    """`len(text.split())`, counted in two C passes over the bytes, without building the list, when the text is
    ASCII (Unicode has more whitespace: the rest take str.split)."""
    if text.isascii():
        marks = text.encode("ascii").translate(_WORD_MARKS)
        return marks.count(b" a") + marks.startswith(b"a")
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
    # Rows by (split, focus, strength, safety label, source): one count per row, not five.
    kinds: Counter[tuple[str, str, str, str, str]] = field(default_factory=Counter)

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
        for kind, rows in self.kinds.items():
            for counter, value in zip(by.values(), kind, strict=True):
                counter[value] += rows
        return {
            "counts": {"total": self.rows, **{key: dict(sorted(c.items())) for key, c in by.items()}},
            "table6": {
                "comparisons": self.rows,
                "avg_turns_per_dialogue": mean(self.turns),
                "avg_tokens_per_example": mean(self.prompt_tokens + self.response_tokens),
                "avg_tokens_in_prompt": mean(self.prompt_tokens),
                "avg_tokens_in_response": mean(self.response_tokens),
                "tokenizer": self.tokenizer,
            },
        }
