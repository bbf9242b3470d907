"""The preference format: the Llama 2 protocol's vocabulary (section 3.2.1), defined once for every floor.

Strength levels, safety labels, margin schemes m(r), the columns of an exported dataset and its schema version.
The Django models take their choices from here, the API validates against it, exports write it and training reads
it. No Django (or any other dependency) here: GPU machines import it from an export directory's reader.
"""

from __future__ import annotations

from enum import StrEnum


class Strength(StrEnum):
    """How much better the chosen response is, in the paper's four levels (strongest first)."""

    SIGNIFICANTLY_BETTER = "significantly_better"
    BETTER = "better"
    SLIGHTLY_BETTER = "slightly_better"
    NEGLIGIBLY_BETTER_OR_UNSURE = "negligibly_better_or_unsure"

    @property
    def label(self) -> str:
        return STRENGTH_LABELS[self]


STRENGTHS: tuple[Strength, ...] = tuple(Strength)
"""Strongest first: the order of Table 8's columns, of the annotator page's keys 1-4 and of every per-level figure."""

STRENGTH_LABELS = {
    Strength.SIGNIFICANTLY_BETTER: "Significantly better",
    Strength.BETTER: "Better",
    Strength.SLIGHTLY_BETTER: "Slightly better",
    Strength.NEGLIGIBLY_BETTER_OR_UNSURE: "Negligibly better / unsure",
}


class SafetyLabel(StrEnum):
    """Safety batches: which of the two responses are safe (section 3.2.1)."""

    CHOSEN_SAFE_OTHER_UNSAFE = "chosen_safe_other_unsafe"
    BOTH_SAFE = "both_safe"
    BOTH_UNSAFE = "both_unsafe"

    @property
    def label(self) -> str:
        return SAFETY_LABEL_LABELS[self]


SAFETY_LABELS: tuple[SafetyLabel, ...] = tuple(SafetyLabel)

SAFETY_LABEL_LABELS = {
    SafetyLabel.CHOSEN_SAFE_OTHER_UNSAFE: "Chosen is safe, the other is unsafe",
    SafetyLabel.BOTH_SAFE: "Both are safe",
    SafetyLabel.BOTH_UNSAFE: "Both are unsafe",
}

CHOSEN_UNSAFE_OTHER_SAFE = "chosen_unsafe_other_safe"
"""The one combination the protocol forbids (the safer response must be the chosen one); named, so that a refusal
can say why instead of calling it unknown."""

PAPER_SAFETY_LABEL_SHARES = {
    SafetyLabel.CHOSEN_SAFE_OTHER_UNSAFE: 0.18,
    SafetyLabel.BOTH_SAFE: 0.47,
    SafetyLabel.BOTH_UNSAFE: 0.35,
}
"""The split of safety labels in Llama 2's safety data, which the dashboards compare a batch against."""

MarginTable = dict[str, float]
"""m(r) by strength value."""

MARGIN_SCHEMES: dict[str, MarginTable | None] = {
    "none": None,
    "small": dict(zip((strength.value for strength in STRENGTHS), (1.0, 2 / 3, 1 / 3, 0.0), strict=True)),
    "large": dict(zip((strength.value for strength in STRENGTHS), (3.0, 2.0, 1.0, 0.0), strict=True)),
}
"""The margin m(r) inside the ranking loss by strength (section 3.2.2); "none" exports no margin column."""

MARGIN_SCHEME_NAMES: tuple[str, ...] = tuple(MARGIN_SCHEMES)


class Split(StrEnum):
    """Which file of an export a row lands in: each batch's held-out comparisons are its test set."""

    TRAIN = "train"
    TEST = "test"


class FinishReason(StrEnum):
    """Why a response ended, as the engine said it (vLLM's and OpenAI's words; never folded into one another)."""

    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"
    CONTENT_FILTER = "content_filter"

    @property
    def label(self) -> str:
        return FINISH_REASON_LABELS[self]


FINISH_REASON_LABELS = {
    FinishReason.STOP: "Stopped at EOS or a stop string",
    FinishReason.LENGTH: "Truncated at max tokens",
    FinishReason.ABORT: "Aborted by the engine",
    FinishReason.CONTENT_FILTER: "Cut by the server's content filter",
}


class Reproducibility(StrEnum):
    """How far a response's seed reproduces its text on the same engine version and device."""

    NONE = "none"
    """The seed does not fix the text (vLLM by default, any OpenAI-compatible server, or no seed)."""
    BATCH = "batch"
    """The same requests sent together again give the same texts; the text depends on what it was batched with."""
    REQUEST = "request"
    """The seed alone fixes the text, whatever else is in the batch (vLLM's batch-invariant mode)."""

    @property
    def label(self) -> str:
        return {"none": "Not reproducible", "batch": "Reproducible as a batch", "request": "Reproducible alone"}[
            self.value
        ]


SCHEMA_VERSION = 1
"""The version of the exported files' layout; training refuses an export whose manifest names another."""

COLUMNS: tuple[str, ...] = (
    "prompt",
    "chosen",
    "rejected",
    "margin",
    "strength",
    "safety_label",
    "is_safety",
    "chosen_checkpoint",
    "chosen_temperature",
    "chosen_seed",
    "rejected_checkpoint",
    "rejected_temperature",
    "rejected_seed",
    "source",
    "batch",
    "week",
    "comparison_id",
    "annotators",
    "agreement",
    "split",
)
"""An exported row's columns, in order (JSONL keys and Parquet columns come out so). Rows follow TRL's
conversational preference format: `prompt` is the dialogue up to the last user turn, `chosen` and `rejected` one
assistant message each. `margin` is left out when the margin scheme is "none"."""


def choices(
    values: type[Strength] | type[SafetyLabel] | type[FinishReason] | type[Reproducibility],
) -> list[tuple[str, str]]:
    """(value, label) pairs, as Django fields and DRF's ChoiceField take them."""
    return [(member.value, member.label) for member in values]


def one_of(values: tuple[str, ...]) -> str:
    """'a, b or c': the list an error message offers."""
    return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else "".join(values)
