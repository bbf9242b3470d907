"""Adding response pairs to a batch, with the full generation parameters of each response."""

from dataclasses import dataclass

from django.db import IntegrityError, transaction

from backend.batches.models import Batch, Comparison, Prompt, Response
from backend.checkpoints.models import Checkpoint, CheckpointKind
from backend.errors import Conflict, InvalidInput

BATCH_NOT_ACCEPTING = "The batch is closed; it takes no new comparisons."
RESPONSE_CHECKPOINT_NOT_POLICY = "Responses must come from a policy checkpoint."
RESPONSE_TEMPERATURE_INVALID = "temperature must be 0 or more and at most 2."
RESPONSE_TOP_P_INVALID = "top_p must be above 0 and at most 1."
RESPONSE_TOO_LONG = "A response is longer than {limit} characters."
MAX_RESPONSE_CHARS = 100_000


@dataclass(frozen=True)
class ResponseInput:
    """One generated response and the parameters that produced it."""

    checkpoint: Checkpoint
    text: str
    temperature: float
    top_p: float = 1.0
    seed: int | None = None
    max_new_tokens: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = Response.FinishReason.STOP
    latency_ms: int | None = None
    engine: str = ""


def _storable(text: str) -> str:
    """Model output is kept as it came, except NUL, which PostgreSQL text cannot hold: it becomes U+FFFD."""
    return text.replace("\x00", "\ufffd")


def _check_response(response: ResponseInput, field: str) -> None:
    if response.checkpoint.kind != CheckpointKind.POLICY:
        raise InvalidInput(RESPONSE_CHECKPOINT_NOT_POLICY, field=f"{field}.checkpoint")
    if not 0 <= response.temperature <= 2:
        raise InvalidInput(RESPONSE_TEMPERATURE_INVALID, field=f"{field}.temperature")
    if not 0 < response.top_p <= 1:
        raise InvalidInput(RESPONSE_TOP_P_INVALID, field=f"{field}.top_p")
    if len(response.text) > MAX_RESPONSE_CHARS:
        raise InvalidInput(RESPONSE_TOO_LONG.format(limit=MAX_RESPONSE_CHARS), field=f"{field}.text")


def comparison_create(
    *,
    batch: Batch,
    prompt: Prompt,
    first: ResponseInput,
    second: ResponseInput,
    responses_identical: bool = False,
) -> tuple[Comparison, bool]:
    """Store two responses to a prompt and pair them in a batch, atomically; returns (comparison, created).

    A batch holds one pair per prompt: a second call for the same prompt (a retry, a redelivered
    sampling task) returns the pair the first call made and stores nothing.
    """
    existing = Comparison.objects.filter(batch=batch, prompt=prompt).first()
    if existing:
        return existing, False
    if batch.status == Batch.Status.CLOSED:
        raise Conflict(BATCH_NOT_ACCEPTING)
    _check_response(first, "first")
    _check_response(second, "second")
    try:
        with transaction.atomic():
            first_row, second_row = (
                Response.objects.create(prompt=prompt, **{**vars(response), "text": _storable(response.text)})
                for response in (first, second)
            )
            comparison = Comparison.objects.create(
                batch=batch,
                prompt=prompt,
                first_response=first_row,
                second_response=second_row,
                responses_identical=responses_identical,
            )
    except IntegrityError:
        # A concurrent call for the same prompt committed first; its pair stands.
        return Comparison.objects.get(batch=batch, prompt=prompt), False
    return comparison, True
