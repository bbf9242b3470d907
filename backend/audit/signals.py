"""Django admin saves and deletions, mirrored into the audit log from the admin's own LogEntry.

The admin writes its LogEntry inside the transaction of the change, so the audit event commits with it.
"""

from typing import Any, cast

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db.models.signals import post_save
from django.dispatch import receiver

from backend.audit.services import audit_event_create

_ADMIN_ACTIONS = {ADDITION: "admin.add", CHANGE: "admin.change", DELETION: "admin.delete"}


@receiver(post_save, sender=LogEntry, dispatch_uid="audit-admin-log-entry")
def audit_admin_log_entry(sender: type[LogEntry], instance: LogEntry, created: bool, **kwargs: Any) -> None:
    if not created:
        return
    content_type = cast(ContentType | None, instance.content_type)
    audit_event_create(
        actor=cast(User, instance.user),
        action=_ADMIN_ACTIONS.get(instance.action_flag, "admin.other"),
        target_type=f"{content_type.app_label}.{content_type.model}" if content_type else "",
        target_id=instance.object_id or "",
        target_repr=instance.object_repr,
        details={"message": instance.get_change_message()} if instance.change_message else {},
    )
