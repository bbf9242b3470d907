"""Registering checkpoints in the registry, and where each is served."""

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from backend.audit.services import audit_record
from backend.checkpoints.models import SERVING_URL_INVALID, Checkpoint, CheckpointKind, validate_serving_url
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


def serving_url_check(serving_url: str) -> str:
    """The URL stripped of spaces and a trailing slash; an InvalidInput naming serving_url if it is not http(s)."""
    url = serving_url.strip().rstrip("/")
    try:
        validate_serving_url(url)
    except ValidationError:
        raise InvalidInput(SERVING_URL_INVALID, field="serving_url") from None
    return url


def checkpoint_serving_set(
    *, checkpoint: Checkpoint, serving_url: str, served_model_name: str = "", actor: User | None = None
) -> Checkpoint:
    """Name the OpenAI-compatible server (and the model name it serves) that the openai engine sends this
    checkpoint's requests to; an empty URL takes the engine's own. Setting the same values again changes nothing."""
    url, model_name = serving_url_check(serving_url), served_model_name.strip()
    if (checkpoint.serving_url, checkpoint.served_model_name) != (url, model_name):
        checkpoint.serving_url, checkpoint.served_model_name = url, model_name
        checkpoint.save(update_fields=["serving_url", "served_model_name"])
        audit_record(actor=actor, action="checkpoint.serving_set", target=checkpoint, details={"serving_url": url})
    return checkpoint
