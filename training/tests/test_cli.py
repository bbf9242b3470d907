"""Command-line options built from Config dataclasses, and the run files every trainer resumes from."""

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from training import ppo_cli, rejection_cli, reward_cli
from training.checkpointing import RESUME_DIR, STATE_FILE, RunFiles
from training.cli import add_config_arguments, config_from_arguments, option
from training.ppo import PPOConfig
from training.rejection_sampling import RejectionSamplingConfig
from training.reward_trainer import RewardTrainingConfig


@dataclass
class Example:
    source: Path = field(metadata=option("Where from.", flag="--from"))
    rate: float = field(default=0.5, metadata=option("A rate."))
    limit: int | None = field(default=None, metadata=option("A limit."))
    fast: bool = field(default=False, metadata=option("Go fast."))
    checks: bool = field(default=True, metadata=option("Skip the checks."))
    bf16: bool | None = field(default=None, metadata=option("bf16."))
    hidden: int = 3
    extra: dict[str, Any] = field(default_factory=dict)


def parse(argv: list[str]) -> Example:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Example)
    return config_from_arguments(Example, parser.parse_args(argv), extra={"note": 1})


def test_fields_with_option_metadata_become_options_with_their_type_and_default():
    assert parse(["--from", "x"]) == Example(Path("x"), extra={"note": 1})
    parsed = parse(["--from", "x", "--rate", "2", "--limit", "4", "--fast", "--no-checks", "--bf16", "off"])
    assert parsed == Example(Path("x"), 2.0, 4, True, False, False, extra={"note": 1})
    assert parse(["--from", "x", "--bf16", "on"]).bf16 is True
    with pytest.raises(SystemExit):
        parse([])  # a field without a default is a required option
    with pytest.raises(SystemExit):
        parse(["--from", "x", "--hidden", "1"])  # no metadata, no option


@pytest.mark.parametrize(
    ("cli", "argv", "expected"),
    [
        (
            reward_cli,
            ["--export", "e", "--backbone", "b", "--output", "o", "--no-margin", "--bf16", "off", "--fsdp"],
            RewardTrainingConfig(Path("e"), Path("b"), Path("o"), use_margin=False, bf16=False, fsdp=True),
        ),
        (
            ppo_cli,
            ["--policy", "p", "--reward-helpfulness", "h", "--prompts", "x", "--output", "o", "--kl-beta", "0.005"],
            PPOConfig(Path("p"), Path("h"), None, Path("x"), Path("o"), kl_beta=0.005),
        ),
        (
            rejection_cli,
            ["--policy", "p", "--reward-helpfulness", "h", "--reward-safety", "s", "--prompts", "x", "--output", "o"],
            RejectionSamplingConfig(Path("p"), Path("h"), Path("s"), Path("x"), Path("o")),
        ),
    ],
)
def test_each_cli_builds_its_config_from_the_command_line(cli, argv, expected):
    config_class = type(expected)
    assert config_from_arguments(config_class, cli.parser().parse_args(argv)) == expected


def test_run_files_swap_states_in_whole_and_finish_into_the_output(tmp_path):
    files = RunFiles(tmp_path / "model")
    assert files.load_state() is None
    files.save_state({"step": 1, "weights": torch.ones(2)})
    files.save_state({"step": 2, "weights": torch.zeros(2)})
    assert (tmp_path / "model.work" / RESUME_DIR / STATE_FILE).exists()
    assert not (tmp_path / "model.work" / f"{RESUME_DIR}.tmp").exists()
    assert files.load_state()["step"] == 2  # type: ignore[index]

    def write(directory: Path) -> str:
        (directory / "weights").write_text("done")
        return "written"

    assert files.finish(write) == "written"
    assert (tmp_path / "model" / "weights").read_text() == "done"
    assert not files.work.exists()
