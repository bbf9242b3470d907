"""Registering checkpoints in the registry."""

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from backend.audit.services import audit_record
from backend.checkpoints.models import Checkpoint, CheckpointKind
from backend.errors import InvalidInput

NAME_REQUIRED = "Give the checkpoint a name."
NAME_TAKEN = "A checkpoint with this name is already registered with a different path or kind."
KIND_UNKNOWN = "kind must be one of: " + ", ".join(CheckpointKind.values) + "."
PATH_REQUIRED = "Give the checkpoint's directory path."
PARENT_UNKNOWN = "No checkpoint with this parent id."


def checkpoint_register(
    *,
    name: str,
    path: str,
    kind: str = CheckpointKind.POLICY,
    parent_id: int | None = None,
    produced_by: str = "",
    notes: str = "",
    created_by: User | None = None,
) -> tuple[Checkpoint, bool]:
    """Register a checkpoint directory; returns (checkpoint, created).

    Registering the same name, path and kind again returns the existing entry.
    """
    name, path = name.strip(), path.strip()
    if not name:
        raise InvalidInput(NAME_REQUIRED, field="name")
    if not path:
        raise InvalidInput(PATH_REQUIRED, field="path")
    if kind not in CheckpointKind.values:
        raise InvalidInput(KIND_UNKNOWN, field="kind")
    parent = None
    if parent_id is not None:
        parent = Checkpoint.objects.filter(pk=parent_id).first()
        if parent is None:
            raise InvalidInput(PARENT_UNKNOWN, field="parent")
    existing = Checkpoint.objects.filter(name=name).first()
    if existing is None:
        try:
            with transaction.atomic():
                checkpoint = Checkpoint.objects.create(
                    name=name,
                    path=path,
                    kind=kind,
                    parent=parent,
                    produced_by=produced_by,
                    notes=notes,
                    created_by=created_by,
                )
                audit_record(actor=created_by, action="checkpoint.register", target=checkpoint)
                return checkpoint, True
        except IntegrityError:
            existing = Checkpoint.objects.get(name=name)
    if existing.path != path or existing.kind != kind:
        raise InvalidInput(NAME_TAKEN, field="name")
    return existing, False
