"""The test suite: embedded defaults unless DATABASE_URL / CELERY_BROKER_URL name real servers."""

import os

os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")

from backend.settings.embedded import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGE_ROOT = BASE_DIR / "var" / "test-storage"  # noqa: F405
EXPORTS_ROOT = STORAGE_ROOT / "exports"
CHECKPOINTS_ROOT = STORAGE_ROOT / "checkpoints"
# Tests render admin pages without running collectstatic first.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
