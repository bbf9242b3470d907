"""Reads of the checkpoint registry."""

from pathlib import Path

from django.conf import settings

from backend.checkpoints.models import Checkpoint


def checkpoint_local_path(*, checkpoint: Checkpoint) -> Path:
    """The checkpoint's directory on this machine: absolute paths as given, others under STORAGE_ROOT."""
    path = Path(checkpoint.path)
    return path if path.is_absolute() else Path(settings.STORAGE_ROOT) / path
