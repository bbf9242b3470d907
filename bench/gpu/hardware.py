"""What the check runs on: the device, its peak figures, the software versions and the commit.

The peaks are the vendors' datasheet figures (dense bf16 tensor-core FLOP/s, without sparsity, and HBM
bandwidth), so the ratios against them are shares of the best the card can do. A card that is not in the
table gets none unless ``GPU_CHECK_PEAK_TFLOPS`` and ``GPU_CHECK_HBM_TBPS`` give them; the same variables
override the table (the dry run on CPU uses them to exercise the arithmetic).
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]

PEAKS: tuple[tuple[str, float, float], ...] = (
    # (substring of torch.cuda.get_device_name, dense bf16 TFLOP/s, HBM TB/s); the first match wins.
    ("GH200", 989.4, 4.0),
    ("H200 NVL", 835.5, 4.8),
    ("H200", 989.4, 4.8),
    ("H100 PCIe", 756.5, 2.0),
    ("H100 NVL", 835.5, 3.9),
    ("H100", 989.4, 3.35),
    ("GH200", 989.4, 4.0),
    ("A100-SXM4-80GB", 312.0, 2.039),
    ("A100 80GB PCIe", 312.0, 1.935),
    ("A100", 312.0, 1.555),
    ("L40S", 362.1, 0.864),
    ("L40", 181.0, 0.864),
    ("L4", 121.0, 0.3),
)

STUBBED_WHEN_ABSENT = {"pyarrow": ("pyarrow", "pyarrow.parquet")}
"""`training.data` imports pyarrow at the top for Parquet exports; the check writes JSONL exports only, and a
GPU machine may have no pyarrow (its wheel is too big to carry), so an empty module stands in for it there."""


@dataclass(frozen=True)
class Device:
    """The device the check measures, with its peaks (None when unknown)."""

    torch_device: torch.device
    name: str
    peak_tflops: float | None
    hbm_tbps: float | None
    peaks_from: str | None
    """"table", "env" or None."""

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "unknown"

    def record(self) -> dict[str, object]:
        info: dict[str, object] = {
            "name": self.name,
            "slug": self.slug,
            "type": self.torch_device.type,
            "peak_bf16_tflops": self.peak_tflops,
            "hbm_tbps": self.hbm_tbps,
            "peaks_from": self.peaks_from,
        }
        if self.torch_device.type == "cuda":
            properties = torch.cuda.get_device_properties(self.torch_device)
            info["count"] = torch.cuda.device_count()
            info["memory_gib"] = round(properties.total_memory / 2**30, 1)
            info["capability"] = f"{properties.major}.{properties.minor}"
        else:
            info["cpu"] = platform.processor() or platform.machine()
            info["cores"] = os.cpu_count()
            info["torch_threads"] = torch.get_num_threads()
        return info


def detect_device(dry: bool) -> Device:
    """CUDA device 0 unless dry or there is none; its peaks from the environment, else the table."""
    cuda = torch.cuda.is_available() and not dry
    torch_device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    name = torch.cuda.get_device_name(torch_device) if cuda else "cpu"
    peak, hbm, source = next(
        ((peak, hbm, "table") for key, peak, hbm in PEAKS if cuda and key in name), (None, None, None)
    )
    env_peak, env_hbm = os.environ.get("GPU_CHECK_PEAK_TFLOPS"), os.environ.get("GPU_CHECK_HBM_TBPS")
    if env_peak or env_hbm:
        peak = float(env_peak) if env_peak else peak
        hbm = float(env_hbm) if env_hbm else hbm
        source = "env"
    return Device(torch_device, name, peak, hbm, source)


def versions() -> dict[str, str | None]:
    """Versions of Python and of every package whose speed the figures depend on (None: not installed)."""
    found: dict[str, str | None] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
    }
    for package in ("transformers", "tokenizers", "safetensors", "accelerate", "numpy", "pyarrow", "vllm"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def commit() -> dict[str, object]:
    """The checked-out commit and whether the tree differs from it; ``GPU_CHECK_COMMIT`` where there is no git.

    A GPU machine gets a copy of the working tree without ``.git``, so whoever starts the check there passes
    the commit in.
    """
    given = os.environ.get("GPU_CHECK_COMMIT")
    if given:
        return {"commit": given, "commit_from": "GPU_CHECK_COMMIT"}
    try:
        head = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "commit_from": None}
    return {"commit": head, "commit_from": "git", "dirty": dirty}


def _git(*arguments: str) -> str:
    done = subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10)
    return done.stdout.strip()


def stub_absent_modules() -> list[str]:
    """Put empty modules in place of each package of ``STUBBED_WHEN_ABSENT`` that is not installed; those stubbed."""
    stubbed = []
    for package, names in STUBBED_WHEN_ABSENT.items():
        if importlib.util.find_spec(package) is not None:
            continue
        for name in names:
            module = types.ModuleType(name, "Stand-in of the GPU check (bench/gpu): the package is not installed.")
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = module
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, module)
        stubbed.append(package)
    return stubbed
