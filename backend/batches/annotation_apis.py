"""The annotator's loop: the next comparison, its display, submit and skip; annotations, and continuing a dialogue.

What annotators receive never names a checkpoint, a temperature or which side is which model.
"""

from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import (
    IsAnnotator,
    IsAnyRole,
)
from backend.accounts.roles import Role, authenticated_user, user_has_role
from backend.api import (
    StrictSerializer,
    created_or_ok,
    paginated,
    refuse_input,
    shared_representation,
    shared_validation,
)
from backend.batches.models import Side, SkipReason
from backend.batches.selectors import (
    annotation_list,
    assignment_for_display,
    batch_get,
)
from backend.batches.services.annotations import (
    CHOICE_INVALID,
    STRENGTH_INVALID,
    annotation_submit,
    assignment_lease_next,
    assignment_skip,
)
from preference_format import Strength, choices

# --- the annotator's loop: next, submit, skip --------------------------------------------------------


class TurnSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()


class AssignmentDisplaySerializer(serializers.Serializer):
    """An AssignmentDisplay: the comparison as its annotator sees it, sides A/B in lease order, no model identity."""

    id = serializers.IntegerField()
    batch = serializers.IntegerField()
    focus = serializers.CharField()
    status = serializers.CharField()
    dialogue = TurnSerializer(many=True, help_text="The turns before the prompt, oldest first.")
    prompt = serializers.CharField()
    response_a = serializers.CharField()
    response_b = serializers.CharField()
    leased_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()


represent_display = shared_representation(AssignmentDisplaySerializer)


class AssignmentNextApi(APIView):
    """Lease the next comparison of a batch: 200 with it, or 204 when there is nothing left for you."""

    permission_classes = [IsAnnotator]

    @extend_schema(
        request=None,
        responses={200: AssignmentDisplaySerializer, 204: OpenApiResponse(description="Nothing left for you.")},
    )
    def post(self, request: Request, batch_id: int) -> Response:
        refuse_input(request.data)
        batch = batch_get(batch_id=batch_id, user=authenticated_user(request))
        assignment = assignment_lease_next(batch=batch, annotator=authenticated_user(request))
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(represent_display(assignment_for_display(assignment_id=assignment.pk)))


class AssignmentDetailApi(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(responses=AssignmentDisplaySerializer)
    def get(self, request: Request, assignment_id: int) -> Response:
        display = assignment_for_display(assignment_id=assignment_id, annotator=authenticated_user(request))
        return Response(represent_display(display))


class AnnotationOutputSerializer(serializers.Serializer):
    """An annotation as its author sees it: the side as displayed, never the model behind it."""

    id = serializers.IntegerField()
    assignment = serializers.IntegerField(source="assignment_id")
    comparison = serializers.IntegerField(source="comparison_id")
    batch = serializers.IntegerField(source="comparison.batch_id")
    choice = serializers.CharField()
    strength = serializers.CharField()
    safety_label = serializers.CharField()
    skip_reason = serializers.CharField()
    comment = serializers.CharField()
    time_spent_ms = serializers.IntegerField()
    idempotency_key = serializers.CharField()
    created_at = serializers.DateTimeField()


represent_annotation = shared_representation(AnnotationOutputSerializer)


class AnnotationStaffSerializer(AnnotationOutputSerializer):
    annotator = serializers.IntegerField(source="annotator_id")
    chosen_response = serializers.IntegerField(source="chosen_response_id", allow_null=True)
    rejected_response = serializers.IntegerField(source="rejected_response_id", allow_null=True)


# What a submit and a skip both carry: a comment, the time on task and the key that makes a retry safe. (A comment,
# not a docstring: drf-spectacular would show a docstring as each input's description.)
class _RecordInputSerializer(StrictSerializer):
    comment = serializers.CharField(required=False, default="", allow_blank=True, max_length=5_000)
    time_spent_ms = serializers.IntegerField(required=False, allow_null=True, default=None)
    idempotency_key = serializers.CharField(max_length=64)


class AssignmentSubmitApi(APIView):
    """Submit a judgement. Retrying with the same idempotency_key returns the stored one (200)."""

    permission_classes = [IsAnnotator]

    @extend_schema_serializer(component_name="AnnotationSubmitInput")
    class InputSerializer(_RecordInputSerializer):
        choice = serializers.ChoiceField(choices=Side.choices, error_messages={"invalid_choice": CHOICE_INVALID})
        strength = serializers.ChoiceField(
            choices=choices(Strength), error_messages={"invalid_choice": STRENGTH_INVALID}
        )
        safety_label = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)

    validate = staticmethod(shared_validation(InputSerializer))

    @extend_schema(
        request=InputSerializer, responses={201: AnnotationOutputSerializer, 200: AnnotationOutputSerializer}
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        data = self.validate(request.data)
        annotation, created = annotation_submit(
            assignment_id=assignment_id, annotator=authenticated_user(request), **data
        )
        return Response(represent_annotation(annotation), status=created_or_ok(created))


class AssignmentSkipApi(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema_serializer(component_name="AssignmentSkipInput")
    class InputSerializer(_RecordInputSerializer):
        reason = serializers.ChoiceField(choices=SkipReason.choices)

    validate = staticmethod(shared_validation(InputSerializer))

    @extend_schema(
        request=InputSerializer, responses={201: AnnotationOutputSerializer, 200: AnnotationOutputSerializer}
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        data = self.validate(request.data)
        annotation, created = assignment_skip(
            assignment_id=assignment_id, annotator=authenticated_user(request), **data
        )
        return Response(represent_annotation(annotation), status=created_or_ok(created))


class AnnotationListApi(APIView):
    """Your annotations (annotators), or everyone's (admins, researchers); filter with ?batch=ID."""

    permission_classes = [IsAnyRole]

    @extend_schema(responses=AnnotationStaffSerializer(many=True))
    def get(self, request: Request) -> Response:
        batch_id = request.query_params.get("batch")
        if batch_id is not None and not batch_id.isdigit():
            raise serializers.ValidationError({"batch": ["batch must be a batch id (an integer)."]})
        annotations = annotation_list(
            user=authenticated_user(request), batch_id=int(batch_id) if batch_id is not None else None
        )
        serializer = (
            AnnotationStaffSerializer
            if user_has_role(request.user, Role.ADMIN, Role.RESEARCHER)
            else AnnotationOutputSerializer
        )
        return paginated(request, self, annotations, serializer)
