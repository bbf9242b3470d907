"""Project-wide API plumbing: the exception handler that maps service errors to clear 4xx replies, the input
serializers' base that refuses unknown fields, and serializers built once for the endpoints every annotator calls on
every comparison."""

import re
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils import html
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from backend.errors import ServiceError

BODY_TOO_LARGE = "The request body is too large: the limit is {limit} bytes."
MAX_IMPORT_BYTES = 200 * 1024 * 1024
TOO_MANY_FIELDS = "The request has too many fields: the limit is {limit}."
UNKNOWN_FIELD = "Unknown field; the fields taken here are: {known}."
NO_FIELDS = "Unknown field; this request takes no fields."
# Django's CSRF form field: an HTML form signed in by session carries it next to the endpoint's own fields.
TRANSPORT_FIELDS = frozenset({"csrfmiddlewaretoken"})
# In form data, `tags[0]`, `first_response.text` and `config.lr` are the list, nested and dict fields' own keys.
_FORM_KEY_BASE = re.compile(r"[.\[]")


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


# The base of every input serializer: a field it does not declare is a 400 that names it, not dropped. DRF drops
# unknown fields silently, so a typo or a misplaced option (`batches` beside an export's `filters` instead of inside
# them) would answer 2xx and do something else. The check is a set difference on the keys, cheap enough for the
# annotator's submit; nested input serializers inherit it too, and name the unknown field under their own
# (`{"first_response": {"txt": [...]}}`). `field_hints` adds advice to a given field's message. (A comment, not a
# docstring: drf-spectacular would show a docstring as the description of every input that inherits it.)
class StrictSerializer(serializers.Serializer):
    field_hints: ClassVar[dict[str, str]] = {}

    @cached_property
    def known_fields(self) -> frozenset[str]:
        return frozenset(self.fields) | TRANSPORT_FIELDS

    def unknown_fields(self, data: Any) -> set[str]:
        if type(data) is dict:  # a JSON body: the annotator's submit and skip take this path
            return data.keys() - self.known_fields
        if not isinstance(data, Mapping):
            return set()  # not an object at all: DRF's own check says so
        if html.is_html_input(data):  # form data: a list, nested or dict field's keys carry a suffix
            return {_FORM_KEY_BASE.split(key, maxsplit=1)[0] for key in data} - self.known_fields
        return set(data.keys()) - self.known_fields

    def unknown_field_message(self, name: str) -> str:
        known = sorted(self.fields)
        general = UNKNOWN_FIELD.format(known=", ".join(known)) if known else NO_FIELDS
        hint = self.field_hints.get(name)
        return f"{general} {hint}" if hint else general

    def to_internal_value(self, data: Any) -> Any:
        unknown = self.unknown_fields(data)
        if not unknown:
            return super().to_internal_value(data)
        errors: dict[str, Any] = {}
        try:
            super().to_internal_value(data)
        except serializers.ValidationError as error:  # the known fields' errors too, in the same reply
            if isinstance(error.detail, dict):
                errors.update(error.detail)
        errors.update({name: [self.unknown_field_message(name)] for name in sorted(unknown)})
        raise serializers.ValidationError(errors)


class NoInputSerializer(StrictSerializer):
    """The body of an action that takes none (open, close, next, sample, retry): any field in it is refused."""


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


_validate_no_input = shared_validation(NoInputSerializer)


def refuse_input(data: Any) -> None:
    """Refuse a body with any field in it, for the actions that take none: `refuse_input(request.data)`."""
    if isinstance(data, Mapping) and not data:  # no body, or an empty object: the usual case, and the fast one
        return
    _validate_no_input(data)


class UploadSerializer(StrictSerializer):
    """An uploaded file (a prompt pool, preference pairs) of at most 200 MB."""

    file = serializers.FileField()

    def validate_file(self, upload: Any) -> Any:
        if upload.size > MAX_IMPORT_BYTES:
            raise serializers.ValidationError(f"The file is larger than {MAX_IMPORT_BYTES // 2**20} MB.")
        return upload
