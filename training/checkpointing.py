"""What a trainer keeps on disk: a resumable state during the run, then the finished model directory.

A run works in `<output>.work/` beside its output directory. Every so many steps it saves its state
(weights, optimizer, step, log: whatever the trainer needs to carry on) to `.work/.resume/state.pt`;
a run started again with the same output finds it and resumes. At the end the model directory is
written to `.work/model/` and renamed to the output, then the work directory is removed, so the output
appears complete or not at all. Every directory is written beside its final place and swapped in, so a
run killed at any moment leaves either the previous version or the new one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

RESUME_DIR = ".resume"
STATE_FILE = "state.pt"
MODEL_DIR = "model"
T = TypeVar("T")


def save_atomically(directory: Path, write: Callable[[Path], object]) -> None:
    """Write into a sibling temporary directory, then swap it in, so that `directory` is always whole.

    A directory cannot be renamed over another, so the old one steps aside first (`<name>.old`) and is removed
    only once the new one is in place; a run killed between the two renames finds the old one there, and
    `recovered` puts it back.
    """
    partial, old = _sibling(directory, ".tmp"), _sibling(directory, ".old")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    recovered(directory)
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    partial.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def recovered(directory: Path) -> Path:
    """`directory` as the last `save_atomically` left it: the previous version when a kill came mid-swap."""
    old = _sibling(directory, ".old")
    if not directory.exists() and old.exists():
        old.rename(directory)
    return directory


def _sibling(directory: Path, suffix: str) -> Path:
    return directory.with_name(directory.name + suffix)


def config_record(config: DataclassInstance) -> dict[str, Any]:
    """A run's settings as JSON values (paths as strings, in lists too), for its metrics.json."""

    def plain(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [plain(item) for item in value]
        return str(value) if isinstance(value, Path) else value

    return {key: plain(value) for key, value in asdict(config).items()}


def step_state(
    model_state: dict[str, Any], optimizer_state: dict[str, Any], scheduler: Any, step: int, log: list[Any]
) -> dict[str, Any]:
    """The resumable state of a trainer counted in optimizer steps (the reward model, rejection sampling's SFT)."""
    return {
        "model": model_state,
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(),
        "step": step,
        "log": log,
    }


@dataclass(frozen=True)
class RunFiles:
    """The work directory of the run that writes `output`."""

    output: Path

    @property
    def work(self) -> Path:
        return self.output.with_name(self.output.name + ".work")

    @property
    def resume(self) -> Path:
        return self.work / RESUME_DIR

    def load_state(self) -> dict[str, Any] | None:
        """The state the last checkpoint saved, on the CPU; None for a fresh run."""
        path = recovered(self.resume) / STATE_FILE
        if not path.exists():
            return None
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
        return state

    def save_state(self, state: dict[str, Any]) -> None:
        """A resumable checkpoint, replacing the previous one whole."""
        save_atomically(self.resume, lambda directory: torch.save(state, directory / STATE_FILE))

    def finish(self, write: Callable[[Path], T]) -> T:
        """`write` fills a fresh model directory, which then replaces the output; the work directory goes."""
        staging = self.work / MODEL_DIR
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        result = write(staging)
        shutil.rmtree(self.output, ignore_errors=True)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(self.output)
        shutil.rmtree(self.work, ignore_errors=True)
        return result
