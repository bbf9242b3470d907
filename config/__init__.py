"""The project package: URLs, the WSGI entry point, the Celery app and the job sweep, wired over every floor.

It is an installed app, so the Celery app below exists in every process that sets Django up (web, workers,
management commands, tests) before any task is sent.
"""

from config.celery import app as celery_app

__all__ = ("celery_app",)
