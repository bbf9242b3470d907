"""Project-wide API plumbing: the exception handler that maps service errors to clear 4xx replies."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from backend.errors import ServiceError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Service errors keep their message (under the field it names); Django validation errors are 400s."""
    if isinstance(exc, ServiceError):
        body: dict[str, Any] = {exc.field: [exc.message]} if exc.field else {"detail": exc.message}
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
        return Response({"detail": exc.messages}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)
