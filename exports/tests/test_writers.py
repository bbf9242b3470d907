"""JSONL lines are exactly json.dumps(row, ensure_ascii=False, separators=(",", ":")), whichever encoder wrote them."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exports.schema import arrow_schema, columns_for
from exports.writers import SplitWriter, leaf_paths
from preference_format import COLUMNS


def row(**overrides):
    values = {
        "prompt": [{"role": "user", "content": "Which is better?"}],
        "chosen": [{"role": "assistant", "content": "This one."}],
        "rejected": [{"role": "assistant", "content": "That one."}],
        "margin": 2 / 3,
        "strength": "better",
        "safety_label": "",
        "is_safety": False,
        "chosen_checkpoint": "policy-w01",
        "chosen_temperature": 0.7,
        "chosen_seed": 7,
        "rejected_checkpoint": "policy-w02",
        "rejected_temperature": 1.0,
        "rejected_seed": None,
        "source": "platform",
        "batch": "week 1",
        "week": "2026-W01",
        "comparison_id": 1,
        "annotators": ["a1b2c3"],
        "agreement": 1.0,
        "split": "train",
    }
    return {name: overrides.get(name, values[name]) for name, _ in columns_for("small")}


TEXT = 'quotes " and \\ backslashes, control \x01\x08\t\n\r\x1f\x7f, accents é, 漢字, emoji 😀, separators \u2028\u2029'


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"chosen": [{"role": "assistant", "content": TEXT}], "batch": TEXT},
        {"chosen_temperature": 1e-05, "rejected_temperature": 0.00009999},
        {"chosen_temperature": 1e16, "rejected_temperature": 1.2345678901234567e-300},
        {"margin": 0.0, "agreement": 0.6666666666666666, "chosen_temperature": float("nan")},
        {"chosen_seed": 2**70},
    ],
    ids=["plain", "escapes", "tiny-floats", "huge-and-subnormal", "nan", "big-int"],
)
def test_jsonl_lines_are_json_dumps_of_the_rows(tmp_path, overrides):
    rows = [row(), row(**overrides), row(comparison_id=3)]
    with SplitWriter(tmp_path, ["jsonl"], "small") as writer:
        for each in rows:
            writer.write(each)
    expected = "".join(json.dumps(each, ensure_ascii=False, separators=(",", ":")) + "\n" for each in rows)
    assert (tmp_path / "train.jsonl").read_bytes() == expected.encode("utf-8")


def test_parquet_row_groups_are_the_table_of_the_rows(tmp_path):
    context = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    rows = [
        row(),
        row(prompt=[*context, {"role": "user", "content": TEXT}], annotators=[], comparison_id=None),
        row(prompt=[{"role": "user"}], chosen_seed=2**40),
    ]
    with SplitWriter(tmp_path, ["parquet"], "small") as writer:
        for each in rows:
            writer.write(each)
    table = pq.read_table(tmp_path / "train.parquet")
    assert table.equals(pa.Table.from_pylist(rows, schema=arrow_schema("small")))


def test_parquet_indexes_every_column_but_the_messages_free_text(tmp_path):
    """Roles, names and numbers get dictionaries and min/max statistics (readers filter on them); message
    contents, each one new, get neither."""
    with SplitWriter(tmp_path, ["parquet"], "small") as writer:
        for comparison_id in range(3):
            writer.write(row(comparison_id=comparison_id))
    metadata = pq.ParquetFile(tmp_path / "train.parquet").metadata
    group = metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert set(columns) == set(leaf_paths(arrow_schema("small")))
    content = {path for path in columns if path.endswith(".content")}
    assert content == {"prompt.list.element.content", "chosen.list.element.content", "rejected.list.element.content"}

    def has_dictionary(path):
        return bool({"RLE_DICTIONARY", "PLAIN_DICTIONARY"} & set(columns[path].encodings))

    for path in content:
        assert not has_dictionary(path) and not columns[path].is_stats_set, path
    for path in ("prompt.list.element.role", "strength", "chosen_checkpoint", "batch", "annotators.list.element"):
        assert has_dictionary(path), path
    for path in set(columns) - content:
        assert columns[path].is_stats_set, path
    assert columns["comparison_id"].statistics.min == 0
    assert columns["comparison_id"].statistics.max == 2


def test_the_arrow_schema_has_every_column_of_the_preference_format_in_order() -> None:
    assert arrow_schema("small").names == list(COLUMNS)
    assert arrow_schema("none").names == [name for name in COLUMNS if name != "margin"]
