"""Project-wide API plumbing: the exception handler that maps service errors to clear 4xx replies, and
serializers built once for the endpoints every annotator calls on every comparison."""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers, status
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


def shared_representation(serializer_class: type[serializers.Serializer]) -> Callable[[Any], dict[str, Any]]:
    """What `serializer_class(instance).data` gives, from one serializer made once.

    Each serializer instance deep-copies its declared fields; on the annotator's next/submit loop that was a
    tenth of a request (bench/api_roundtrip.py --profile). For serializers whose fields keep no state between
    calls and read no context (plain fields, nested plain serializers), one instance serves every request.
    """
    return serializer_class().to_representation


def shared_validation(serializer_class: type[serializers.Serializer]) -> Callable[[Any], dict[str, Any]]:
    """The validated data of `serializer_class(data=data)`, from one serializer made once; a ValidationError
    (a 400 naming each field) when the data is invalid, as `is_valid(raise_exception=True)` raises it."""
    serializer = serializer_class()

    def validate(data: Any) -> dict[str, Any]:
        try:
            return dict(serializer.run_validation(data))
        except serializers.ValidationError as error:
            # A body that is no object at all (JSON null) fails as a list: put it under non_field_errors, as is_valid.
            raise serializers.ValidationError(serializers.as_serializer_error(error)) from None

    return validate
