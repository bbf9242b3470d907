from typing import Any

from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


def _sync_roles(app_config: AppConfig, **kwargs: Any) -> None:
    # post_migrate goes to each app in turn, creating its permissions; after the last app, they all exist.
    last = [config for config in apps.get_app_configs() if config.models_module is not None][-1]
    if app_config.label == last.label:
        from backend.accounts.services import roles_sync

        roles_sync()


class AccountsConfig(AppConfig):
    name = "backend.accounts"
    label = "accounts"

    def ready(self) -> None:
        # Every migrate (a fresh deployment, the test database) ends with the role groups in place.
        post_migrate.connect(_sync_roles, dispatch_uid="accounts-sync-roles")
        from backend.accounts import login_throttle  # noqa: F401  (counts failed sign-ins)
        from backend.accounts.auth_cache import connect_invalidation

        connect_invalidation()
