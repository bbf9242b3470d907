"""A web process loads the URL configuration, and with it every API and admin module, without torch: the model
libraries load only in the workers and commands that sample, score or train."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys, django
django.setup()
import config.urls, config.wsgi  # noqa: F401
from django.contrib import admin
admin.autodiscover()
heavy = sorted(name for name in ("torch", "transformers", "vllm") if name in sys.modules)
print(",".join(heavy))
"""


def test_the_web_process_imports_no_model_library() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"DJANGO_SETTINGS_MODULE": "backend.settings.test", "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == "", f"the web process imported {result.stdout.strip()}"
