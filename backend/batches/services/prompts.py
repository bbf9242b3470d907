"""Writing prompts (by annotators, or imported into the pool from a file) and continuing dialogues."""

from collections.abc import Sequence

from django.contrib.auth.models import User
from django.db import transaction

from backend.audit.services import audit_record
from backend.batches.models import Annotation, Dialogue, Prompt, PromptSource, Turn
from backend.errors import Conflict, InvalidInput, NotFound
from backend.idempotency import create_once
from backend.uploads import UPLOAD_FORMAT, UPLOAD_LINE, record_flag, uploaded_records

PROMPT_TEXT_REQUIRED = "The prompt text is empty."
PROMPT_TOO_LONG = "The prompt is longer than {limit} characters."
PROMPT_NUL = "The prompt contains a NUL character (\\u0000), which cannot be stored."
TAGS_INVALID = "tags must be a list of short strings."
SOURCE_UNKNOWN = "source must be one of: annotator, pool, dialogue."
CLIENT_KEY_INVALID = "client_key must be at most 64 characters."
ANNOTATION_NOT_YOURS = "No such annotation of yours."
CONTINUE_SKIPPED = "A skipped comparison has no chosen response to continue from."

MAX_PROMPT_CHARS = 20_000
MAX_TAGS = 20


def _check_text(text: str, field: str) -> str:
    text = text.strip()
    if not text:
        raise InvalidInput(PROMPT_TEXT_REQUIRED, field=field)
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInput(PROMPT_TOO_LONG.format(limit=MAX_PROMPT_CHARS), field=field)
    if "\x00" in text:
        raise InvalidInput(PROMPT_NUL, field=field)
    return text


def _check_tags(tags: Sequence[str]) -> list[str]:
    if not isinstance(tags, (list, tuple)) or len(tags) > MAX_TAGS:
        raise InvalidInput(TAGS_INVALID, field="tags")
    if not all(isinstance(tag, str) and 0 < len(tag) <= 50 for tag in tags):
        raise InvalidInput(TAGS_INVALID, field="tags")
    return sorted(set(tags))


def prompt_create(
    *,
    text: str,
    author: User | None,
    source: str = PromptSource.POOL,
    is_safety: bool = False,
    is_adversarial: bool = False,
    tags: Sequence[str] = (),
    dialogue: Dialogue | None = None,
    client_key: str = "",
) -> tuple[Prompt, bool]:
    """Create a prompt; returns (prompt, created). The same author and client_key give one prompt."""
    text = _check_text(text, "text")
    if source not in PromptSource.values:
        raise InvalidInput(SOURCE_UNKNOWN, field="source")
    checked_tags = _check_tags(tags)
    if len(client_key) > 64:
        raise InvalidInput(CLIENT_KEY_INVALID, field="client_key")
    return create_once(
        Prompt.objects,
        owner=author,
        owner_field="author",
        client_key=client_key,
        create=lambda: Prompt.objects.create(
            text=text,
            author=author,
            source=source,
            is_safety=is_safety,
            is_adversarial=is_adversarial,
            tags=checked_tags,
            dialogue=dialogue,
            client_key=client_key,
        ),
    )


def dialogue_continue(
    *, annotation_id: int, annotator: User, next_message: str, client_key: str = ""
) -> tuple[Prompt, bool]:
    """Make the next turn of a dialogue: the chosen response becomes context, the annotator's message the prompt.

    Each continuation gets its own Dialogue (a copy of the context so far), so two annotators who
    continue the same comparison with different choices branch rather than collide.
    """
    next_message = _check_text(next_message, "next_message")
    annotation = (
        Annotation.objects.select_related("comparison__prompt", "chosen_response")
        .filter(pk=annotation_id, annotator=annotator)
        .first()
    )
    if annotation is None:
        raise NotFound(ANNOTATION_NOT_YOURS)
    if annotation.is_skipped or annotation.chosen_response is None:
        raise Conflict(CONTINUE_SKIPPED)
    if client_key:
        existing = Prompt.objects.filter(author=annotator, client_key=client_key).first()
        if existing:
            return existing, False
    prompt = annotation.comparison.prompt
    with transaction.atomic():
        opening = prompt.dialogue.opening_prompt_id if prompt.dialogue else None
        dialogue = Dialogue.objects.create(created_by=annotator, opening_prompt_id=opening or prompt.pk)
        context = [(t.role, t.content) for t in prompt.dialogue.turns.all()] if prompt.dialogue else []
        context += [(Turn.Role.USER, prompt.text), (Turn.Role.ASSISTANT, annotation.chosen_response.text)]
        Turn.objects.bulk_create(
            Turn(dialogue=dialogue, index=i, role=role, content=content) for i, (role, content) in enumerate(context)
        )
        return prompt_create(
            text=next_message,
            author=annotator,
            source=PromptSource.DIALOGUE,
            is_safety=prompt.is_safety,
            is_adversarial=prompt.is_adversarial,
            tags=prompt.tags,
            dialogue=dialogue,
            client_key=client_key,
        )


def prompts_import(*, content: bytes, created_by: User | None) -> dict[str, int]:
    """Add prompts to the pool from JSONL ({"text", "is_safety", "is_adversarial", "tags"}) or CSV (same columns).

    All or nothing: a bad line names itself and nothing is stored. Texts already in the pool are skipped.
    """
    records = list(uploaded_records(content, csv_column="text"))
    if not records:
        raise InvalidInput(UPLOAD_FORMAT.format(column="text"), field="file")
    created = skipped = 0
    with transaction.atomic():
        existing = set(Prompt.objects.filter(source=PromptSource.POOL).values_list("text", flat=True))
        for number, record in records:
            text = str(record.get("text") or "").strip()
            if not text:
                raise InvalidInput(UPLOAD_LINE.format(line=number, problem="'text' is empty"), field="file")
            if text in existing:
                skipped += 1
                continue
            tags = record.get("tags") or []
            if isinstance(tags, str):
                tags = [tag.strip() for tag in tags.split(";") if tag.strip()]
            try:
                prompt_create(
                    text=text,
                    author=None,
                    source=PromptSource.POOL,
                    is_safety=record_flag(record.get("is_safety", False)),
                    is_adversarial=record_flag(record.get("is_adversarial", False)),
                    tags=tags,
                )
            except InvalidInput as error:
                raise InvalidInput(UPLOAD_LINE.format(line=number, problem=error.message), field="file") from error
            existing.add(text)
            created += 1
        audit_record(actor=created_by, action="prompts.import", details={"created": created, "skipped": skipped})
    return {"created": created, "skipped": skipped}
