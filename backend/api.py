"""Project-wide API plumbing: the exception handler that maps service errors to clear 4xx replies."""

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from backend.errors import ServiceError

BODY_TOO_LARGE = "The request body is too large: the limit is {limit} bytes."
TOO_MANY_FIELDS = "The request has too many fields: the limit is {limit}."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Service errors keep their message (under the field it names); Django validation errors are 400s;
    bodies past the upload limits are a JSON 413 (or 400), not Django's HTML error page."""
    if isinstance(exc, ServiceError):
        body: dict[str, Any] = {exc.field: [exc.message]} if exc.field else {"detail": exc.message}
        return Response(body, status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response({"detail": BODY_TOO_LARGE.format(limit=limit)}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return Response({"detail": TOO_MANY_FIELDS.format(limit=limit)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
        return Response({"detail": exc.messages}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)
