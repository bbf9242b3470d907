"""The export format: columns, margins and the schema version that training checks. No Django here.

Rows follow TRL's conversational preference convention: `prompt` is the dialogue up to and including
the last user turn, `chosen` and `rejected` are each one assistant message. `datasets.load_dataset`
and TRL's RewardTrainer read the files as they are.
"""

import pyarrow as pa

SCHEMA_VERSION = 1

STRENGTHS = ("significantly_better", "better", "slightly_better", "negligibly_better_or_unsure")
# Llama 2, section 3.2.2: the margin m(r) added inside the ranking loss, by strength.
MARGINS = {
    "none": None,
    "small": dict(zip(STRENGTHS, (1.0, 2 / 3, 1 / 3, 0.0), strict=True)),
    "large": dict(zip(STRENGTHS, (3.0, 2.0, 1.0, 0.0), strict=True)),
}

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

# Column order is part of the format: JSONL keys and Parquet columns come out in this order.
COLUMNS: list[tuple[str, pa.DataType]] = [
    ("prompt", _MESSAGES),
    ("chosen", _MESSAGES),
    ("rejected", _MESSAGES),
    ("margin", pa.float64()),
    ("strength", pa.string()),
    ("safety_label", pa.string()),
    ("is_safety", pa.bool_()),
    ("chosen_checkpoint", pa.string()),
    ("chosen_temperature", pa.float64()),
    ("chosen_seed", pa.int64()),
    ("rejected_checkpoint", pa.string()),
    ("rejected_temperature", pa.float64()),
    ("rejected_seed", pa.int64()),
    ("source", pa.string()),
    ("batch", pa.string()),
    ("week", pa.string()),
    ("comparison_id", pa.int64()),
    ("annotators", pa.list_(pa.string())),
    ("agreement", pa.float64()),
    ("split", pa.string()),
]


def columns_for(margin_scheme: str) -> list[tuple[str, pa.DataType]]:
    """The columns of an export: without `margin` when the scheme is 'none'."""
    if MARGINS[margin_scheme] is None:
        return [column for column in COLUMNS if column[0] != "margin"]
    return list(COLUMNS)


def arrow_schema(margin_scheme: str) -> pa.Schema:
    return pa.schema(columns_for(margin_scheme))
