"""Recording audit events; callers record inside the transaction of the action, so both commit or neither."""

from typing import Any

from django.contrib.auth.models import User
from django.db import models

from backend.audit.models import AuditEvent

_REPR_LENGTH = AuditEvent._meta.get_field("target_repr").max_length or 200


def audit_event_create(
    *,
    actor: User | None,
    action: str,
    target_type: str = "",
    target_id: str = "",
    target_repr: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Store one event about a target named by type and id (which may no longer exist, e.g. after a deletion)."""
    return AuditEvent.objects.create(
        actor=actor,
        actor_username=actor.get_username() if actor is not None else "",
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_repr=target_repr[:_REPR_LENGTH],
        details=details or {},
    )


def audit_record(
    *, actor: User | None, action: str, target: models.Model | None = None, details: dict[str, Any] | None = None
) -> AuditEvent:
    """Record that `actor` (None: the system) did `action` (e.g. "batch.open") to `target`."""
    if target is None:
        return audit_event_create(actor=actor, action=action, details=details)
    return audit_event_create(
        actor=actor,
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        target_repr=str(target),
        details=details,
    )
