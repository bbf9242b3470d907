"""`/healthz`: is the database reachable, and the Celery broker? Only a database failure is fatal."""

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

BROKER_TIMEOUT_SECONDS = 1.0


def database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"; the message goes in the reply
        return f"down: {exc.__class__.__name__}"
    return "ok"


def broker_status() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "eager"
    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=BROKER_TIMEOUT_SECONDS) as broker:
            broker.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as exc:  # any transport error means "down"
        return f"down: {exc.__class__.__name__}"
    return "ok"


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 "ok" when all is well, 200 "degraded" when only the broker is down, 503 when the database is."""
    database, broker = database_status(), broker_status()
    if database != "ok":
        overall, code = "down", 503
    elif broker.startswith("down"):
        overall, code = "degraded", 200
    else:
        overall, code = "ok", 200
    return JsonResponse({"status": overall, "database": database, "broker": broker}, status=code)
