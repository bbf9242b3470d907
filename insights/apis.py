"""The dashboards' JSON twins: the same figures as the pages, for scripts. Admins and researchers."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import IsStaffRole
from backend.api import StrictSerializer
from insights import selectors
from insights.lineage import KINDS, NODE_TYPES, RELATIONS, lineage
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
    class InputSerializer(StrictSerializer):
        checkpoint = serializers.IntegerField(min_value=1)

    @extend_schema(request=InputSerializer, responses={202: OpenApiResponse(description="Queued; how many wait.")})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        queued = response_scores_request(
            checkpoint_id=data.validated_data["checkpoint"], enqueue=enqueue_response_scores
        )
        return Response(queued, status=status.HTTP_202_ACCEPTED)


# Described with inline_serializer: fields called label, source and root would shadow serializers.Field's own.
LINEAGE_NODE_FIELDS: dict[str, serializers.Field] = {
    "key": serializers.CharField(help_text="'<type>:<id>', e.g. 'batch:3'; edges name nodes by it."),
    "type": serializers.ChoiceField(choices=NODE_TYPES),
    "id": serializers.IntegerField(),
    "label": serializers.CharField(),
    "layer": serializers.IntegerField(help_text="Its column: the longest chain of links before it."),
    "figures": serializers.DictField(
        help_text="batch: comparisons, annotations, held_out, focus, status, week; export: rows_per_split, "
        "schema_version, rows, mix, granularity, status; training_run: kind, status, and accuracy (reward "
        "models) or reward_gain, reward_before, reward_after, reward_gain_basis (policy runs); checkpoint: name, "
        "kind, and accuracy (reward models)."
    ),
    "url": serializers.CharField(help_text="Its page: the batch's dashboard, or the admin's page of the others."),
    "api_url": serializers.CharField(),
    "lineage_url": serializers.CharField(help_text="The lineage page that starts from it."),
}
LINEAGE_EDGE_FIELDS: dict[str, serializers.Field] = {
    "source": serializers.CharField(help_text="The key of the node the data came from."),
    "target": serializers.CharField(),
    "relation": serializers.ChoiceField(choices=RELATIONS),
}
LINEAGE = inline_serializer(
    "Lineage",
    {
        "root": serializers.CharField(help_text="The key of the node it starts from."),
        "nodes": inline_serializer("LineageNode", LINEAGE_NODE_FIELDS, many=True),
        "edges": inline_serializer("LineageEdge", LINEAGE_EDGE_FIELDS, many=True),
        "truncated": serializers.BooleanField(help_text="The walk stopped at its node limit."),
    },
)


class LineageApi(APIView):
    """The turn of the loop around one artifact: batches, export, reward models, policy runs, new checkpoint and
    the batches that sampled it, as nodes (with their key figures and links) and edges."""

    permission_classes = [IsStaffRole]

    @extend_schema(
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(KINDS)),
            OpenApiParameter("node_id", OpenApiTypes.INT, OpenApiParameter.PATH),
        ],
        responses={200: LINEAGE, 404: OpenApiResponse(description="No such kind, or no such object.")},
    )
    def get(self, request: Request, kind: str, node_id: int) -> Response:
        return Response(lineage(kind=kind, node_id=node_id))
