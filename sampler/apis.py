"""Sampling endpoints: start pre-sampling a batch (admins), and live pairs for written prompts (annotators)."""

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import IsAnnotator, IsBatchAdmin
from backend.accounts.roles import authenticated_user
from backend.api import StrictSerializer, queued_or_ok, refuse_input
from backend.batches.annotation_apis import represent_display
from backend.batches.models import LivePair
from backend.batches.selectors import assignment_for_display, batch_by_id, batch_get
from sampler.selectors import live_pair_get
from sampler.services import batch_start_sampling, live_pair_public_error, live_pair_request
from sampler.tasks import enqueue_chunk, enqueue_live_pair

TEXT_OR_PROMPT = "Give either the prompt `text` you wrote or the id of your `prompt` (a dialogue's next turn)."


class BatchSampleApi(APIView):
    """Start (or resume) pre-sampling a draft batch from the prompt pool; progress shows on the batch."""

    permission_classes = [IsBatchAdmin]

    @extend_schema_serializer(component_name="BatchSampleResult")
    class OutputSerializer(serializers.Serializer):
        prompts = serializers.IntegerField()
        chunks = serializers.IntegerField()

    @extend_schema(request=None, responses={202: OutputSerializer})
    def post(self, request: Request, batch_id: int) -> Response:
        refuse_input(request.data)
        batch = batch_by_id(batch_id=batch_id)
        queued = batch_start_sampling(batch=batch, enqueue=enqueue_chunk, actor=authenticated_user(request))
        return Response(self.OutputSerializer(queued).data, status=status.HTTP_202_ACCEPTED)


class LivePairSerializer(serializers.Serializer):
    """A handle to poll: `pending`, then `done` with the leased comparison, or `failed` with a reason for its
    author (never the engine's error, which names checkpoints: staff read that on the batch's detail)."""

    id = serializers.IntegerField()
    status = serializers.CharField()
    prompt = serializers.IntegerField(source="prompt_id")
    error = serializers.SerializerMethodField()
    poll_url = serializers.SerializerMethodField()
    assignment = serializers.SerializerMethodField()

    def get_error(self, live_pair: LivePair) -> str:
        return live_pair_public_error(live_pair)

    def get_poll_url(self, live_pair: LivePair) -> str:
        return reverse("live-pair-detail", kwargs={"live_pair_id": live_pair.pk})

    def get_assignment(self, live_pair: LivePair) -> dict[str, Any] | None:
        if live_pair.assignment_id is None:
            return None
        return represent_display(assignment_for_display(assignment_id=live_pair.assignment_id))


class LivePairCreateApi(APIView):
    """Write a prompt (or send your dialogue's next turn) and get a pair sampled for it now: poll the handle."""

    permission_classes = [IsAnnotator]

    @extend_schema_serializer(component_name="LivePairRequestInput")
    class InputSerializer(StrictSerializer):
        text = serializers.CharField(required=False, default="", allow_blank=True, max_length=20_000)
        prompt = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
        client_key = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if bool(attrs["text"].strip()) == (attrs["prompt"] is not None):
                raise serializers.ValidationError({"text": [TEXT_OR_PROMPT]})
            return attrs

    @extend_schema(request=InputSerializer, responses={202: LivePairSerializer, 200: LivePairSerializer})
    def post(self, request: Request, batch_id: int) -> Response:
        user = authenticated_user(request)
        batch = batch_get(batch_id=batch_id, user=user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        live_pair, created = live_pair_request(
            batch=batch,
            annotator=user,
            enqueue=enqueue_live_pair,
            text=values["text"],
            prompt_id=values["prompt"],
            client_key=values["client_key"],
        )
        live_pair.refresh_from_db()  # in eager mode the pair was sampled on commit, before this line
        code = queued_or_ok(created)
        return Response(LivePairSerializer(live_pair).data, status=code)


class LivePairDetailApi(APIView):
    permission_classes = [IsAnnotator]

    @extend_schema(responses=LivePairSerializer)
    def get(self, request: Request, live_pair_id: int) -> Response:
        live_pair = live_pair_get(live_pair_id=live_pair_id, annotator=authenticated_user(request))
        return Response(LivePairSerializer(live_pair).data)
