"""Sign-in rate limiting: after LOGIN_FAILURE_LIMIT failed attempts for one username from one address within
LOGIN_FAILURE_WINDOW_SECONDS, further attempts get a 429 with Retry-After until the window ends.

Failures are counted from Django's `user_login_failed` signal, so every sign-in path counts (the annotator
login page, the admin login, the API token endpoint); the middleware refuses early on those paths. The
counts live in Django's cache, which must be shared by every gunicorn worker: Redis when Redis is
configured, local memory in embedded mode (one process). If the cache is unreachable, sign-in is not
blocked: availability wins over the throttle, and the failure is logged.
"""

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

TOO_MANY_FAILURES = (
    "Too many failed sign-in attempts for this account from your address; try again in {minutes} minute(s)."
)


def _client_address(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it.
    return str(request.META.get("REMOTE_ADDR", ""))


def _keys(username: str, address: str) -> tuple[str, str]:
    digest = hashlib.sha256(f"{username.strip().lower()}|{address}".encode()).hexdigest()
    return f"login-failures:{digest}", f"login-window:{digest}"


def login_failure_record(*, username: str, address: str) -> None:
    """Count one failed sign-in; the first failure starts the window."""
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    count_key, start_key = _keys(username, address)
    try:
        cache.add(start_key, time.time(), timeout=window)
        cache.add(count_key, 0, timeout=window)
        cache.incr(count_key)
    except Exception:
        logger.exception("Could not count a failed sign-in (cache unreachable); not throttling it")


def login_retry_after(*, username: str, address: str) -> int:
    """Seconds until this username may try again from this address; 0 when it may try now."""
    count_key, start_key = _keys(username, address)
    try:
        values = cache.get_many([count_key, start_key])
    except Exception:
        logger.exception("Could not read sign-in failures (cache unreachable); not throttling")
        return 0
    if values.get(count_key, 0) < settings.LOGIN_FAILURE_LIMIT:
        return 0
    started = values.get(start_key, time.time())
    return max(1, math.ceil(started + settings.LOGIN_FAILURE_WINDOW_SECONDS - time.time()))


@receiver(user_login_failed, dispatch_uid="accounts-login-failure-count")
def _count_failure(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    username = str(credentials.get("username") or "")
    if request is not None and username:
        login_failure_record(username=username, address=_client_address(request))


def _posted_username(request: HttpRequest) -> str:
    if request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError, RequestDataTooBig):
            return ""
        return str(body.get("username") or "") if isinstance(body, dict) else ""
    return str(request.POST.get("username") or "")


class LoginRateLimitMiddleware:
    """Refuses sign-in attempts (POSTs to LOGIN_RATE_LIMITED_PATHS) of a throttled username and address."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path in settings.LOGIN_RATE_LIMITED_PATHS:
            username = _posted_username(request)
            wait = login_retry_after(username=username, address=_client_address(request)) if username else 0
            if wait:
                return self._refusal(request, wait)
        return self.get_response(request)

    @staticmethod
    def _refusal(request: HttpRequest, wait: int) -> HttpResponse:
        message = TOO_MANY_FAILURES.format(minutes=math.ceil(wait / 60))
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse({"detail": message}, status=429)
        else:
            response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(wait)
        return response
