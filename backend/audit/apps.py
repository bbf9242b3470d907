from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "backend.audit"
    label = "audit"

    def ready(self) -> None:
        from backend.audit import signals  # noqa: F401  (mirrors Django admin changes into the log)
