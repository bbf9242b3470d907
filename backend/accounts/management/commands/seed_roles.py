"""`manage.py seed_roles`: create the annotator, admin and researcher groups with their permissions."""

from typing import Any

from django.core.management.base import BaseCommand

from backend.accounts.services import roles_sync


class Command(BaseCommand):
    help = "Create the role groups (annotator, admin, researcher) and their admin permissions. Idempotent."

    def handle(self, *args: Any, **options: Any) -> None:
        for role, count in roles_sync().items():
            self.stdout.write(f"{role}: {count} permissions")
