"""The dashboards' JSON twins: the same figures as the pages, for scripts. Admins and researchers."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import IsStaffRole
from insights import selectors
from insights.services import response_scores_request
from insights.tasks import enqueue_response_scores

FIGURES = OpenApiResponse(description="The dashboard's figures (the page shows the same).")


class DashboardBatchApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=FIGURES)
    def get(self, request: Request, batch_id: int) -> Response:
        return Response(selectors.batch_dashboard(batch_id=batch_id))


class DashboardAnnotatorListApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=FIGURES)
    def get(self, request: Request) -> Response:
        return Response({"batches": selectors.batch_overview(), "annotators": selectors.annotator_overview()})


class DashboardAnnotatorDetailApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=FIGURES)
    def get(self, request: Request, annotator_id: int) -> Response:
        return Response(selectors.annotator_dashboard(annotator_id=annotator_id))


class DashboardModelsApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=FIGURES)
    def get(self, request: Request) -> Response:
        return Response(selectors.models_dashboard())


class ResponseScoresRequestApi(APIView):
    """Queue scoring the judged responses a reward model has not scored yet (the drift figures read them)."""

    permission_classes = [IsStaffRole]

    @extend_schema_serializer(component_name="ResponseScoresInput")
    class InputSerializer(serializers.Serializer):
        checkpoint = serializers.IntegerField(min_value=1)

    @extend_schema(request=InputSerializer, responses={202: OpenApiResponse(description="Queued; how many wait.")})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        queued = response_scores_request(
            checkpoint_id=data.validated_data["checkpoint"], enqueue=enqueue_response_scores
        )
        return Response(queued, status=status.HTTP_202_ACCEPTED)
