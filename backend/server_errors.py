"""The 500 handler. A database that is away for a moment (restarting, failing over) answers 503 with
Retry-After, which clients retry with the same idempotency key; anything else stays a 500, as JSON under /api/.
"""

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import server_error

DATABASE_UNAVAILABLE = (
    "The database is unavailable for a moment; retry the request (a retry with the same idempotency key is safe)."
)
SERVER_ERROR = "Internal server error."
RETRY_AFTER_SECONDS = 2


def server_error_handler(request: HttpRequest) -> HttpResponse:
    """Django calls this inside its `except` block for an uncaught exception, so `sys.exc_info` names it."""
    error = sys.exc_info()[1]
    if isinstance(error, (OperationalError, InterfaceError)):
        response = JsonResponse({"detail": DATABASE_UNAVAILABLE, "code": "database_unavailable"}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": SERVER_ERROR, "code": "server_error"}, status=500)
    return server_error(request)
