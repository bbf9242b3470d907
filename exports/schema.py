"""The export's Arrow schema: a type for each column of the preference format. No Django here.

The columns, their order, the margin schemes and the schema version are the preference format's
(`preference_format`); this module only gives them Arrow types, so that `datasets.load_dataset` and TRL's
RewardTrainer read the files as they are.
"""

import pyarrow as pa

from preference_format import COLUMNS, MARGIN_SCHEMES

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

_TYPES: dict[str, pa.DataType] = {
    "prompt": _MESSAGES,
    "chosen": _MESSAGES,
    "rejected": _MESSAGES,
    "margin": pa.float64(),
    "strength": pa.string(),
    "safety_label": pa.string(),
    "is_safety": pa.bool_(),
    "chosen_checkpoint": pa.string(),
    "chosen_temperature": pa.float64(),
    "chosen_seed": pa.int64(),
    "rejected_checkpoint": pa.string(),
    "rejected_temperature": pa.float64(),
    "rejected_seed": pa.int64(),
    "source": pa.string(),
    "batch": pa.string(),
    "week": pa.string(),
    "comparison_id": pa.int64(),
    "annotators": pa.list_(pa.string()),
    "agreement": pa.float64(),
    "split": pa.string(),
}


def columns_for(margin_scheme: str) -> list[tuple[str, pa.DataType]]:
    """The columns of an export: without `margin` when the scheme is 'none'."""
    with_margin = MARGIN_SCHEMES[margin_scheme] is not None
    return [(name, _TYPES[name]) for name in COLUMNS if with_margin or name != "margin"]


def arrow_schema(margin_scheme: str) -> pa.Schema:
    return pa.schema(columns_for(margin_scheme))
