from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles(app_config: AppConfig, **kwargs: Any) -> None:
    # The batches app migrates last among ours; by then every permission the roles need exists.
    if app_config.label == "batches":
        from backend.accounts.services import roles_sync

        roles_sync()


class AccountsConfig(AppConfig):
    name = "backend.accounts"
    label = "accounts"

    def ready(self) -> None:
        # Every migrate (a fresh deployment, the test database) ends with the role groups in place.
        post_migrate.connect(_sync_roles, dispatch_uid="accounts-sync-roles")
