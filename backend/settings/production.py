"""Production: a real SECRET_KEY is required, cookies are secure, DEBUG is off unless asked for."""

from django.core.exceptions import ImproperlyConfigured

from backend.settings.base import *  # noqa: F403
from backend.settings.env import env_bool, env_str

_INSECURE_MARKERS = ("insecure", "change-me", "changeme", "secret")

if not SECRET_KEY or len(SECRET_KEY) < 32 or any(m in SECRET_KEY.lower() for m in _INSECURE_MARKERS):  # noqa: F405
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random value of at least 32 characters in production "
        "(for example: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

# Served over HTTPS (directly or behind a TLS proxy that sets X-Forwarded-Proto). SECURE_COOKIES=0 turns the
# HTTPS-only settings off together, for a deployment reached over plain HTTP on a trusted network.
_HTTPS = env_bool("SECURE_COOKIES", True)
SESSION_COOKIE_SECURE = _HTTPS
CSRF_COOKIE_SECURE = _HTTPS
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _HTTPS)
# Health checks come from inside the stack over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = int(env_str("SECURE_HSTS_SECONDS", "31536000" if _HTTPS else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_HTTPONLY = True
# The CSRF cookie stays readable: the annotator page's script sends it back in X-CSRFToken.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
