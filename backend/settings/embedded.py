"""One machine, no services: SQLite under var/, Celery tasks run in-process, DEBUG on."""
import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")

from backend.settings.base import *  # noqa: E402,F403
from backend.settings.base import STORAGE_ROOT  # noqa: E402

if not SECRET_KEY:  # noqa: F405
    SECRET_KEY = "embedded-insecure-key-only-for-one-local-machine"

STORAGE_ROOT.mkdir(parents=True, exist_ok=True)
