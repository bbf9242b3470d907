"""Sections under one time budget: each records its figures, its error or why it did not run, and the next one runs."""

from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bench.gpu.hardware import Device
from bench.gpu.models import Workspace
from bench.gpu.profiles import Profile


class NotRun(Exception):
    """A section that cannot run here (vLLM absent, no GPU): recorded as ``{"run": false, "reason": ...}``."""


class Budget:
    """Seconds left of the whole check's wall-clock budget."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)

    def check(self, needed: float, what: str) -> None:
        """Raise ``NotRun`` unless ``needed`` seconds are left for ``what``."""
        if self.left() < needed:
            raise NotRun(
                f"time budget: {max(self.left(), 0):.0f} s left of {self.seconds:.0f} s, "
                f"{what} needs about {needed:.0f} s"
            )


@dataclass(frozen=True)
class Context:
    """What every section gets: the device, the sizes to run at, the shared checkpoints and the budget."""

    device: Device
    profile: Profile
    workspace: Workspace
    budget: Budget

    @property
    def torch_device(self) -> torch.device:
        return self.device.torch_device

    @property
    def cuda(self) -> bool:
        return self.device.torch_device.type == "cuda"


Section = Callable[[Context], dict[str, Any]]


def run_section(name: str, section: Section, context: Context) -> dict[str, Any]:
    """Run one section if the budget allows it: ``run``, ``seconds`` and ``figures``, ``error`` or ``reason``."""
    started = time.perf_counter()
    if context.cuda:
        torch.cuda.reset_peak_memory_stats(context.torch_device)
    result: dict[str, Any]
    try:
        context.budget.check(context.profile.min_seconds.get(name, 0.0), f"the {name} section")
        result = {"run": True, "figures": section(context)}
    except NotRun as verdict:
        result = {"run": False, "reason": str(verdict)}
    except Exception as error:  # a failing section is a figure of the check: record it, run the next one
        lines = traceback.format_exception(error)
        result = {"run": True, "error": f"{type(error).__name__}: {error}", "traceback": "".join(lines[-6:])}
    context.workspace.clear_scratch()
    result["seconds"] = round(time.perf_counter() - started, 2)
    if context.cuda and result["run"]:
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(context.torch_device) / 2**30, 2)
    gc.collect()
    if context.cuda:
        torch.cuda.empty_cache()
    return result
