"""Production settings refuse to start without a real SECRET_KEY; DATABASE_URL is parsed strictly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from backend.settings.env import database_from_url, env_bool

ROOT = Path(__file__).resolve().parents[3]


def import_production(secret_key: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key
    env["DJANGO_SETTINGS_MODULE"] = "backend.settings.production"
    code = "import django; django.setup(); from django.conf import settings; print(settings.SESSION_COOKIE_SECURE)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("secret_key", [None, "", "short", "django-insecure-" + "a" * 40])
def test_production_refuses_a_missing_or_weak_secret_key(secret_key):
    result = import_production(secret_key)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_starts_with_a_real_key_and_secure_cookies():
    result = import_production("Zq8" + "k3Jx9mW2pL7vB4nR6tY1" * 3)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_database_urls(tmp_path):
    postgres = database_from_url("postgres://u:p%40ss@db.local:5433/rlhf?sslmode=require", base_dir=tmp_path)
    assert (postgres["USER"], postgres["PASSWORD"], postgres["HOST"], postgres["PORT"], postgres["NAME"]) == (
        "u",
        "p@ss",
        "db.local",
        "5433",
        "rlhf",
    )
    assert postgres["OPTIONS"] == {"sslmode": "require"}
    assert database_from_url("sqlite:///var/x.db", base_dir=tmp_path)["NAME"] == str(tmp_path / "var/x.db")
    assert database_from_url("sqlite:////abs/x.db", base_dir=tmp_path)["NAME"] == "/abs/x.db"
    with pytest.raises(ImproperlyConfigured, match="mysql"):
        database_from_url("mysql://x/y", base_dir=tmp_path)


def test_booleans_are_strict(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        env_bool("DEBUG")
