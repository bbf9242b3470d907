"""The gold-comparison API: admins add pairs with a known answer to a batch. Annotators never see gold-ness."""

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import IsBatchAdmin
from backend.accounts.roles import authenticated_user
from backend.api import StrictSerializer, created_or_ok
from backend.batches.apis import ComparisonStaffSerializer, ResponseInputSerializer
from backend.batches.selectors import batch_by_id
from backend.batches.services.comparisons import ResponseInput
from backend.batches.services.gold import gold_comparison_create
from preference_format import SafetyLabel, choices


class GoldComparisonOutputSerializer(ComparisonStaffSerializer):
    better_response = serializers.IntegerField(source="gold_answer.better_response_id")
    expected_safety_label = serializers.CharField(source="gold_answer.safety_label")


class GoldComparisonCreateApi(APIView):
    """Add a gold comparison: a prompt, two responses and which one is better (optionally the safety label)."""

    permission_classes = [IsBatchAdmin]

    @extend_schema_serializer(component_name="GoldComparisonCreateInput")
    class InputSerializer(StrictSerializer):
        prompt = serializers.CharField(max_length=20_000, help_text="The prompt text.")
        first_response = ResponseInputSerializer()
        second_response = ResponseInputSerializer()
        better = serializers.ChoiceField(choices=["first", "second"])
        safety_label = serializers.ChoiceField(
            choices=choices(SafetyLabel), required=False, default="", allow_blank=True
        )

    @extend_schema(
        request=InputSerializer, responses={201: GoldComparisonOutputSerializer, 200: GoldComparisonOutputSerializer}
    )
    def post(self, request: Request, batch_id: int) -> Response:
        batch = batch_by_id(batch_id=batch_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        comparison, created = gold_comparison_create(
            batch=batch,
            prompt_text=values["prompt"],
            first=ResponseInput(**values["first_response"]),
            second=ResponseInput(**values["second_response"]),
            better=values["better"],
            safety_label=values["safety_label"],
            created_by=authenticated_user(request),
        )
        return Response(
            GoldComparisonOutputSerializer(comparison).data,
            status=created_or_ok(created),
        )
