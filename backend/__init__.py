"""The Django project: settings, URLs, the Celery app and the domain apps."""

from backend.celery import app as celery_app

__all__ = ("celery_app",)
