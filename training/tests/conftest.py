"""Tiny backbones and synthetic exports for training tests."""

from pathlib import Path

import pytest

from sampler.engines.tiny import build_tiny_checkpoint
from training.tests.synthetic import write_export


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("backbone") / "tiny", seed=0)


@pytest.fixture
def synthetic_export(tmp_path) -> Path:
    return write_export(tmp_path / "export", train=256, test=64)
