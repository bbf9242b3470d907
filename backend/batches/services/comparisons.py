"""Adding response pairs to a batch, with the full generation parameters of each response."""

import hashlib
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from backend.batches.models import Batch, Comparison, Prompt, Response
from backend.checkpoints.models import Checkpoint, CheckpointKind
from backend.errors import Conflict, InvalidInput
from preference_format import FinishReason, Reproducibility

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
    finish_reason: str = FinishReason.STOP
    latency_ms: int | None = None
    engine: str = ""
    engine_version: str = ""
    device: str = ""
    dtype: str = ""
    reproducibility: str = Reproducibility.NONE


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


def conversation_id(prompt: Prompt) -> int:
    """The prompt that opened the prompt's conversation (itself for a single-turn prompt): the unit of the split."""
    dialogue = prompt.dialogue
    return dialogue.opening_prompt_id if dialogue is not None and dialogue.opening_prompt_id else prompt.pk


def split_draw(batch_id: int, conversation: int) -> float:
    """A uniform number in [0, 1) fixed by the batch and the conversation: below the fraction means held out."""
    digest = hashlib.sha256(f"held-out/{batch_id}/{conversation}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _held_out(batch: Batch, prompt: Prompt) -> bool:
    """The split of a new pair, decided once, when it is made.

    A conversation keeps the split that its first pair got, in any batch, so that every turn of a dialogue,
    and a prompt sampled again in a later batch, never lands on both sides; a new one is held out when its
    draw falls below the batch's fraction, until the test split holds `held_out_size` pairs.
    """
    conversation = conversation_id(prompt)
    # The opening prompt's own pairs carry the conversation's split: a later turn exists only because one of them
    # was judged. (One indexed lookup, so sampling stays cheap on a large table.)
    earlier = (
        Comparison.objects.filter(prompt_id=conversation, is_gold=False).values_list("is_held_out", flat=True).first()
    )
    if earlier is not None:
        return earlier
    if split_draw(batch.pk, conversation) >= batch.held_out_fraction:
        return False
    return Comparison.objects.filter(batch=batch, is_held_out=True).count() < batch.held_out_size


def comparison_create(
    *,
    batch: Batch,
    prompt: Prompt,
    first: ResponseInput,
    second: ResponseInput,
    responses_identical: bool = False,
    is_gold: bool = False,
) -> tuple[Comparison, bool]:
    """Store two responses to a prompt and pair them in a batch, atomically; returns (comparison, created).

    A batch holds one pair per prompt: a second call for the same prompt (a retry, a redelivered
    sampling task) returns the pair the first call made and stores nothing. The pair's split is decided
    here (see `_held_out`); a gold item is never held out.
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
                is_gold=is_gold,
                is_held_out=not is_gold and _held_out(batch, prompt),
            )
    except IntegrityError:
        # A concurrent call for the same prompt committed first; its pair stands.
        return Comparison.objects.get(batch=batch, prompt=prompt), False
    return comparison, True
