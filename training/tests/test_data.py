"""Reading an export directory: margins are taken as the manifest's scheme says, never made up."""

import json
from pathlib import Path

import pytest

from training.data import load_pairs
from training.tests.synthetic import write_export


def _rewrite(directory: Path, *, scheme: str | None, drop_margin_of_row: int | None = None) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    if scheme is None:
        manifest.pop("margin_scheme", None)
    else:
        manifest["margin_scheme"] = scheme
    (directory / "manifest.json").write_text(json.dumps(manifest))
    if drop_margin_of_row is not None:
        rows = [json.loads(line) for line in (directory / "train.jsonl").read_text().splitlines()]
        del rows[drop_margin_of_row]["margin"]
        (directory / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_the_margins_of_a_small_scheme_export_are_read_as_written(tmp_path: Path) -> None:
    pairs = load_pairs(write_export(tmp_path, train=8, test=0), "train")
    assert [pair.margin for pair in pairs[:4]] == [1.0, 2 / 3, 1 / 3, 0.0]


def test_a_row_without_its_margin_under_a_margin_scheme_is_an_error_naming_the_row(tmp_path: Path) -> None:
    export = write_export(tmp_path, train=8, test=0)
    _rewrite(export, scheme="small", drop_margin_of_row=2)
    with pytest.raises(ValueError, match=r"train split, row 3: no margin, though the margin scheme is 'small'"):
        load_pairs(export, "train")


def test_an_export_without_a_margin_scheme_trains_without_margins(tmp_path: Path) -> None:
    export = write_export(tmp_path, train=8, test=0)
    _rewrite(export, scheme="none")
    assert {pair.margin for pair in load_pairs(export, "train")} == {0.0}


def test_a_manifest_naming_no_scheme_takes_its_first_row_at_its_word(tmp_path: Path) -> None:
    export = write_export(tmp_path, train=8, test=0)
    _rewrite(export, scheme=None, drop_margin_of_row=5)
    with pytest.raises(ValueError, match="row 6: no margin"):
        load_pairs(export, "train")
