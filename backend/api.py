"""Project-wide API plumbing: the exception handler that maps service errors to clear 4xx replies, and
serializers built once for the endpoints every annotator calls on every comparison."""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from backend.errors import ServiceError

BODY_TOO_LARGE = "The request body is too large: the limit is {limit} bytes."
MAX_IMPORT_BYTES = 200 * 1024 * 1024
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


def paginated(request: Request, view: APIView, queryset: Any, serializer: type[serializers.Serializer]) -> Response:
    """One page of the queryset (`limit`, `offset`) with the count and the next/previous links."""
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


def created_or_ok(created: bool) -> int:
    """A retried create (same client key or idempotency key) answers 200 with the stored row; the first, 201."""
    return status.HTTP_201_CREATED if created else status.HTTP_200_OK


def queued_or_ok(created: bool) -> int:
    """A job's create (export, run, iteration, live pair) answers 202, queued; its retry 200 with the stored job."""
    return status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK


def shared_representation(serializer_class: type[serializers.Serializer]) -> Callable[[Any], dict[str, Any]]:
    """What `serializer_class(instance).data` gives, from one serializer made once.

    Each serializer instance deep-copies its declared fields, a large share of an annotator's next/submit request
    (`bench/api_roundtrip.py --profile` shows it). For serializers whose fields keep no state between calls and read
    no context (plain fields, nested plain serializers), one instance serves every request.
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


class UploadSerializer(serializers.Serializer):
    """An uploaded file (a prompt pool, preference pairs) of at most 200 MB."""

    file = serializers.FileField()

    def validate_file(self, upload: Any) -> Any:
        if upload.size > MAX_IMPORT_BYTES:
            raise serializers.ValidationError(f"The file is larger than {MAX_IMPORT_BYTES // 2**20} MB.")
        return upload
