"""Production: a real SECRET_KEY is required, cookies are secure, DEBUG is off unless asked for."""

from django.core.exceptions import ImproperlyConfigured

from backend.settings.base import *  # noqa: F403
from backend.settings.env import env_bool

_INSECURE_MARKERS = ("insecure", "change-me", "changeme", "secret")

if not SECRET_KEY or len(SECRET_KEY) < 32 or any(m in SECRET_KEY.lower() for m in _INSECURE_MARKERS):  # noqa: F405
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random value of at least 32 characters in production "
        "(for example: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
