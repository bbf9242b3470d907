"""Reads of the checkpoint registry and its training runs."""

from pathlib import Path

from django.conf import settings
from django.db.models import QuerySet

from backend.checkpoints.models import Checkpoint, TrainingRun
from backend.errors import NotFound

CHECKPOINT_NOT_FOUND = "No such checkpoint."
TRAINING_RUN_NOT_FOUND = "No such training run."
LIST_LIMIT = 200


def checkpoint_local_path(*, checkpoint: Checkpoint) -> Path:
    """The checkpoint's directory on this machine: absolute paths as given, others under STORAGE_ROOT."""
    path = Path(checkpoint.path)
    return path if path.is_absolute() else Path(settings.STORAGE_ROOT) / path


def checkpoint_list(*, kind: str = "") -> "QuerySet[Checkpoint]":
    """Every registered checkpoint, newest first; of one kind when `kind` is given."""
    checkpoints = Checkpoint.objects.all()
    return checkpoints.filter(kind=kind) if kind else checkpoints


def checkpoint_by_id(*, checkpoint_id: int) -> Checkpoint:
    checkpoint = Checkpoint.objects.filter(pk=checkpoint_id).first()
    if checkpoint is None:
        raise NotFound(CHECKPOINT_NOT_FOUND)
    return checkpoint


def training_run_list() -> "QuerySet[TrainingRun]":
    """The newest training runs."""
    return TrainingRun.objects.all()[:LIST_LIMIT]


def training_run_by_id(*, run_id: int) -> TrainingRun:
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None:
        raise NotFound(TRAINING_RUN_NOT_FOUND)
    return run
