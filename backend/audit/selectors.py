"""Reading the audit log, newest first, filtered the way staff look for something."""

from django.db.models import QuerySet

from backend.audit.models import AuditEvent


def audit_event_list(
    *, action: str = "", actor_id: int | None = None, target_type: str = "", target_id: str = ""
) -> QuerySet[AuditEvent]:
    """Events newest first; `action` matches exactly or as a prefix ending in '.' ("batch." = every batch action)."""
    events = AuditEvent.objects.all()
    if action:
        events = events.filter(action__startswith=action) if action.endswith(".") else events.filter(action=action)
    if actor_id is not None:
        events = events.filter(actor_id=actor_id)
    if target_type:
        events = events.filter(target_type=target_type)
    if target_id:
        events = events.filter(target_id=target_id)
    return events
