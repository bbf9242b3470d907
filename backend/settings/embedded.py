"""One machine, no services: SQLite under var/, Celery tasks run in-process, DEBUG on."""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
# Only this one machine's demo and tests use this key; production refuses to start without its own.
os.environ.setdefault("SECRET_KEY", "embedded-local-only-" + "x" * 40)

from backend.settings.base import *  # noqa: F403
from backend.settings.base import STORAGE_ROOT

STATIC_ROOT = STORAGE_ROOT / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Static files straight from the apps' folders, no collectstatic needed on one machine.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# One process: the sign-in throttle's counts need no shared cache.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
