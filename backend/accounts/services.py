"""Keeping the role groups and their model permissions in place."""

from django.contrib.auth.models import Group, Permission

from backend.accounts.roles import Role

# Model permissions each role gets in the Django admin, as (app_label, codename prefixes).
_ROLE_PERMISSIONS: dict[Role, dict[str, tuple[str, ...]]] = {
    Role.ANNOTATOR: {},
    Role.ADMIN: {
        "batches": ("add_", "change_", "delete_", "view_"),
        "checkpoints": ("add_", "change_", "view_"),
        "auth": ("view_user", "change_user", "add_user"),
        "authtoken": ("view_",),
        "exports": ("view_",),
        "audit": ("view_",),
        "loop": ("add_batchtemplate", "change_batchtemplate", "view_"),
    },
    Role.RESEARCHER: {
        "batches": ("view_",),
        "checkpoints": ("add_", "change_", "view_"),
        "exports": ("add_exportrun", "view_"),
        "audit": ("view_",),
        "loop": ("add_iteration", "view_"),
    },
}


def roles_sync() -> dict[str, int]:
    """Create the role groups and give each its admin permissions; safe to run any number of times.

    Returns the number of permissions each group now holds.
    """
    counts = {}
    for role, grants in _ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role.value)
        permissions = [
            permission
            for permission in Permission.objects.select_related("content_type")
            if any(
                permission.content_type.app_label == app and permission.codename.startswith(prefixes)
                for app, prefixes in grants.items()
            )
        ]
        group.permissions.set(permissions)
        counts[role.value] = len(permissions)
    return counts
