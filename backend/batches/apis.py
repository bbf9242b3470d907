"""The annotation-core API. Each view validates its input, calls one service or selector, serializes.

What annotators receive never names a checkpoint, a temperature or which side is which model.
"""

from typing import Any

from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import (
    IsAnnotator,
    IsAnyRole,
    IsBatchAdmin,
    IsStaffRole,
)
from backend.accounts.roles import Role, authenticated_user, user_has_role
from backend.api import shared_representation, shared_validation
from backend.batches.models import (
    Batch,
    Comparison,
    Focus,
    Prompt,
    PromptSource,
    SkipReason,
)
from backend.batches.selectors import (
    annotation_list,
    assignment_for_display,
    batch_get,
    batch_list,
    batch_progress,
    prompt_list,
)
from backend.batches.services.annotations import (
    annotation_submit,
    assignment_lease_next,
    assignment_skip,
)
from backend.batches.services.batches import batch_close, batch_create, batch_open
from backend.batches.services.comparisons import ResponseInput, comparison_create
from backend.batches.services.prompts import dialogue_continue, prompt_create
from backend.checkpoints.models import Checkpoint
from backend.errors import NotFound

PROMPT_NOT_FOUND = "No prompt with this id."


def _created_or_ok(created: bool) -> int:
    return status.HTTP_201_CREATED if created else status.HTTP_200_OK


def _paginated(request: Request, view: APIView, queryset: Any, serializer: type[serializers.Serializer]) -> Response:
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


# --- batches ---------------------------------------------------------------------------------


class BatchProgressSerializer(serializers.Serializer):
    comparisons = serializers.IntegerField()
    held_out = serializers.IntegerField()
    complete = serializers.IntegerField()
    annotations = serializers.IntegerField()
    skips = serializers.IntegerField()
    live_leases = serializers.IntegerField()
    target_annotations = serializers.IntegerField()
    fraction_done = serializers.FloatField()


class BatchAnnotatorSerializer(serializers.ModelSerializer):
    """What an annotator sees of a batch: no sampling plan."""

    class Meta:
        model = Batch
        fields = [
            "id",
            "name",
            "iso_week",
            "focus",
            "status",
            "opens_at",
            "closes_at",
            "guidelines",
            "annotators_write_prompts",
            "annotator_quota",
        ]


class BatchStaffSerializer(serializers.ModelSerializer):
    class Meta:
        model = Batch
        fields = [
            "id",
            "name",
            "iso_week",
            "focus",
            "status",
            "checkpoints",
            "temperatures",
            "top_p",
            "max_new_tokens",
            "target_comparisons",
            "overlap",
            "annotator_quota",
            "held_out_size",
            "held_out_fraction",
            "opens_at",
            "closes_at",
            "guidelines",
            "annotators_write_prompts",
            "gold_rate",
            "selection",
            "selection_checkpoint",
            "sampling_error",
            "sampled_at",
            "created_at",
            "opened_at",
            "closed_at",
        ]


def _batch_serializer(request: Request) -> type[serializers.ModelSerializer]:
    if user_has_role(request.user, Role.ADMIN, Role.RESEARCHER):
        return BatchStaffSerializer
    return BatchAnnotatorSerializer


class BatchListCreateApi(APIView):
    """GET: batches you may see (annotators: open ones). POST: create a draft batch (admins)."""

    @extend_schema_serializer(component_name="BatchCreateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        focus = serializers.ChoiceField(choices=Focus.choices, default=Focus.HELPFULNESS)
        iso_week = serializers.CharField(max_length=8, required=False, default="", allow_blank=True)
        checkpoints = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list)
        temperatures = serializers.ListField(
            child=serializers.FloatField(), required=False, default=list, max_length=32
        )
        top_p = serializers.FloatField(default=0.9)
        max_new_tokens = serializers.IntegerField(default=512)
        target_comparisons = serializers.IntegerField(min_value=1, max_value=10_000_000)
        overlap = serializers.IntegerField(default=1)
        annotator_quota = serializers.IntegerField(required=False, allow_null=True, default=None)
        held_out_size = serializers.IntegerField(default=1000, min_value=0)
        held_out_fraction = serializers.FloatField(default=0.1)
        opens_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        closes_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        guidelines = serializers.CharField(required=False, allow_blank=True, default="", max_length=100_000)
        annotators_write_prompts = serializers.BooleanField(default=False)
        gold_rate = serializers.FloatField(default=0.05, help_text="Share of leases that serve gold, 0 to 0.5.")
        selection = serializers.ChoiceField(choices=Batch.Selection.choices, default=Batch.Selection.BALANCED)
        selection_checkpoint = serializers.IntegerField(
            required=False,
            allow_null=True,
            default=None,
            min_value=1,
            help_text="The reward model for 'uncertain' selection.",
        )

    def get_permissions(self) -> list[BasePermission]:
        return [IsBatchAdmin()] if self.request.method == "POST" else [IsAnyRole()]

    @extend_schema(responses=BatchStaffSerializer(many=True))
    def get(self, request: Request) -> Response:
        batches = batch_list(user=authenticated_user(request)).prefetch_related("checkpoints")
        return _paginated(request, self, batches, _batch_serializer(request))

    @extend_schema(request=InputSerializer, responses={201: BatchStaffSerializer, 200: BatchStaffSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        batch, created = batch_create(
            checkpoint_ids=values.pop("checkpoints"),
            selection_checkpoint_id=values.pop("selection_checkpoint"),
            created_by=authenticated_user(request),
            **values,
        )
        return Response(BatchStaffSerializer(batch).data, status=_created_or_ok(created))


class BatchDetailApi(APIView):
    permission_classes = [IsAnyRole]

    @extend_schema_serializer(component_name="BatchDetail")
    class OutputSerializer(BatchStaffSerializer):
        progress = serializers.SerializerMethodField()

        class Meta(BatchStaffSerializer.Meta):
            fields = [*BatchStaffSerializer.Meta.fields, "progress"]

        def get_progress(self, batch: Batch) -> dict[str, Any]:
            progress = batch_progress(batch=batch)
            return dict(BatchProgressSerializer(progress).data)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, batch_id: int) -> Response:
        batch = batch_get(batch_id=batch_id, user=authenticated_user(request))
        serializer = (
            self.OutputSerializer
            if user_has_role(request.user, Role.ADMIN, Role.RESEARCHER)
            else (BatchAnnotatorSerializer)
        )
        return Response(serializer(batch).data)


class BatchOpenApi(APIView):
    permission_classes = [IsBatchAdmin]

    @extend_schema(request=None, responses=BatchStaffSerializer)
    def post(self, request: Request, batch_id: int) -> Response:
        batch = batch_open(batch=get_object_or_404(Batch, pk=batch_id), actor=authenticated_user(request))
        return Response(BatchStaffSerializer(batch).data)


class BatchCloseApi(APIView):
    permission_classes = [IsBatchAdmin]

    @extend_schema(request=None, responses=BatchStaffSerializer)
    def post(self, request: Request, batch_id: int) -> Response:
        batch = batch_close(batch=get_object_or_404(Batch, pk=batch_id), actor=authenticated_user(request))
        return Response(BatchStaffSerializer(batch).data)


# --- comparisons (staff view, with provenance) ---------------------------------------------------


class ResponseProvenanceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    checkpoint = serializers.IntegerField(source="checkpoint_id")
    text = serializers.CharField()
    temperature = serializers.FloatField()
    top_p = serializers.FloatField()
    seed = serializers.IntegerField(allow_null=True)
    max_new_tokens = serializers.IntegerField(allow_null=True)
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    finish_reason = serializers.CharField()
    latency_ms = serializers.IntegerField(allow_null=True)
    engine = serializers.CharField()


class ComparisonStaffSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    batch = serializers.IntegerField(source="batch_id")
    prompt = serializers.IntegerField(source="prompt_id")
    prompt_text = serializers.CharField(source="prompt.text")
    first_response = ResponseProvenanceSerializer()
    second_response = ResponseProvenanceSerializer()
    is_held_out = serializers.BooleanField()
    annotation_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class ResponseInputSerializer(serializers.Serializer):
    checkpoint = serializers.PrimaryKeyRelatedField(queryset=Checkpoint.objects.all())
    text = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=100_000)
    temperature = serializers.FloatField(min_value=0, max_value=2)
    top_p = serializers.FloatField(default=1.0)
    seed = serializers.IntegerField(required=False, allow_null=True, default=None)
    max_new_tokens = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    prompt_tokens = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0)
    completion_tokens = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0)
    finish_reason = serializers.ChoiceField(choices=["stop", "length"], default="stop")
    latency_ms = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0)
    engine = serializers.CharField(required=False, default="", allow_blank=True, max_length=32)


class BatchComparisonListCreateApi(APIView):
    """GET: the batch's comparisons with full provenance (staff). POST: add a pair (admins)."""

    @extend_schema_serializer(component_name="ComparisonCreateInput")
    class InputSerializer(serializers.Serializer):
        prompt = serializers.IntegerField(min_value=1)
        first_response = ResponseInputSerializer()
        second_response = ResponseInputSerializer()

    def get_permissions(self) -> list[BasePermission]:
        return [IsBatchAdmin()] if self.request.method == "POST" else [IsStaffRole()]

    @extend_schema(responses=ComparisonStaffSerializer(many=True))
    def get(self, request: Request, batch_id: int) -> Response:
        batch = get_object_or_404(Batch, pk=batch_id)
        comparisons = Comparison.objects.filter(batch=batch).select_related(
            "prompt", "first_response", "second_response"
        )
        return _paginated(request, self, comparisons, ComparisonStaffSerializer)

    @extend_schema(request=InputSerializer, responses={201: ComparisonStaffSerializer})
    def post(self, request: Request, batch_id: int) -> Response:
        batch = get_object_or_404(Batch, pk=batch_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        prompt = Prompt.objects.filter(pk=values["prompt"]).first()
        if prompt is None:
            raise NotFound(PROMPT_NOT_FOUND)
        comparison, created = comparison_create(
            batch=batch,
            prompt=prompt,
            first=ResponseInput(**values["first_response"]),
            second=ResponseInput(**values["second_response"]),
        )
        return Response(ComparisonStaffSerializer(comparison).data, status=_created_or_ok(created))


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


class AssignmentSubmitApi(APIView):
    """Submit a judgement. Retrying with the same idempotency_key returns the stored one (200)."""

    permission_classes = [IsAnnotator]

    @extend_schema_serializer(component_name="AnnotationSubmitInput")
    class InputSerializer(serializers.Serializer):
        choice = serializers.CharField(max_length=8)
        strength = serializers.CharField(max_length=64)
        safety_label = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
        comment = serializers.CharField(required=False, default="", allow_blank=True, max_length=5_000)
        time_spent_ms = serializers.IntegerField(required=False, allow_null=True, default=None)
        idempotency_key = serializers.CharField(max_length=64)

    validate = staticmethod(shared_validation(InputSerializer))

    @extend_schema(
        request=InputSerializer, responses={201: AnnotationOutputSerializer, 200: AnnotationOutputSerializer}
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        data = self.validate(request.data)
        annotation, created = annotation_submit(
            assignment_id=assignment_id, annotator=authenticated_user(request), **data
        )
        return Response(represent_annotation(annotation), status=_created_or_ok(created))


class AssignmentSkipApi(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema_serializer(component_name="AssignmentSkipInput")
    class InputSerializer(serializers.Serializer):
        reason = serializers.ChoiceField(choices=SkipReason.choices)
        comment = serializers.CharField(required=False, default="", allow_blank=True, max_length=5_000)
        time_spent_ms = serializers.IntegerField(required=False, allow_null=True, default=None)
        idempotency_key = serializers.CharField(max_length=64)

    validate = staticmethod(shared_validation(InputSerializer))

    @extend_schema(
        request=InputSerializer, responses={201: AnnotationOutputSerializer, 200: AnnotationOutputSerializer}
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        data = self.validate(request.data)
        annotation, created = assignment_skip(
            assignment_id=assignment_id, annotator=authenticated_user(request), **data
        )
        return Response(represent_annotation(annotation), status=_created_or_ok(created))


class AnnotationListApi(APIView):
    """Your annotations (annotators), or everyone's (admins, researchers); filter with ?batch=ID."""

    permission_classes = [IsAnyRole]

    @extend_schema(responses=AnnotationStaffSerializer(many=True))
    def get(self, request: Request) -> Response:
        annotations = annotation_list(user=authenticated_user(request))
        batch_id = request.query_params.get("batch")
        if batch_id is not None:
            if not batch_id.isdigit():
                raise serializers.ValidationError({"batch": ["batch must be a batch id (an integer)."]})
            annotations = annotations.filter(comparison__batch_id=int(batch_id))
        serializer = (
            AnnotationStaffSerializer
            if user_has_role(request.user, Role.ADMIN, Role.RESEARCHER)
            else AnnotationOutputSerializer
        )
        return _paginated(request, self, annotations, serializer)


# --- prompts and dialogues -------------------------------------------------------------------------


class PromptOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Prompt
        fields = ["id", "text", "source", "is_safety", "is_adversarial", "tags", "dialogue", "created_at"]


class PromptListCreateApi(APIView):
    """GET: the prompt pool (staff) or your own prompts. POST: write a prompt (any role)."""

    permission_classes = [IsAnyRole]

    @extend_schema_serializer(component_name="PromptCreateInput")
    class InputSerializer(serializers.Serializer):
        text = serializers.CharField(max_length=20_000)
        is_safety = serializers.BooleanField(default=False)
        is_adversarial = serializers.BooleanField(default=False)
        tags = serializers.ListField(
            child=serializers.CharField(max_length=50), required=False, default=list, max_length=20
        )
        client_key = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)

    @extend_schema(responses=PromptOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return _paginated(request, self, prompt_list(user=authenticated_user(request)), PromptOutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: PromptOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        source = (
            PromptSource.POOL if user_has_role(request.user, Role.ADMIN, Role.RESEARCHER) else PromptSource.ANNOTATOR
        )
        prompt, created = prompt_create(author=authenticated_user(request), source=source, **data.validated_data)
        return Response(PromptOutputSerializer(prompt).data, status=_created_or_ok(created))


class AnnotationContinueApi(APIView):
    """Continue the dialogue from your annotation: the chosen response becomes context for your next turn."""

    permission_classes = [IsAnnotator]

    @extend_schema_serializer(component_name="DialogueContinueInput")
    class InputSerializer(serializers.Serializer):
        next_message = serializers.CharField(max_length=20_000)
        client_key = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)

    @extend_schema(request=InputSerializer, responses={201: PromptOutputSerializer})
    def post(self, request: Request, annotation_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        prompt, created = dialogue_continue(
            annotation_id=annotation_id, annotator=authenticated_user(request), **data.validated_data
        )
        return Response(PromptOutputSerializer(prompt).data, status=_created_or_ok(created))
