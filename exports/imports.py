"""Open-source preference data (Anthropic HH style), imported apart from the platform's own annotations."""

import hashlib
import json

from django.contrib.auth.models import User
from django.db import transaction

from backend.audit.services import audit_record
from backend.errors import InvalidInput
from backend.uploads import uploaded_records
from exports.models import ExternalPreference

HH_PAIR_INVALID = "Line {line}: 'chosen' and 'rejected' must be Anthropic HH transcripts ending in an Assistant turn."
SOURCE_REQUIRED = "Name the source, e.g. 'anthropic-hh-harmless'."


def hh_transcript(transcript: str) -> tuple[list[dict[str, str]], str]:
    """Split an Anthropic HH transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") into (prompt messages, last reply)."""
    messages: list[dict[str, str]] = []
    for part in ("\n\n" + transcript.strip("\n")).split("\n\n"):
        if part.startswith("Human:"):
            messages.append({"role": "user", "content": part[len("Human:") :].strip()})
        elif part.startswith("Assistant:"):
            messages.append({"role": "assistant", "content": part[len("Assistant:") :].strip()})
        elif messages and part:
            messages[-1]["content"] += "\n\n" + part
    if len(messages) < 2 or messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user":
        raise ValueError("not a transcript ending in an Assistant reply")
    return messages[:-1], messages[-1]["content"]


def preferences_import(
    *, content: bytes, source: str, harmless: bool, created_by: User | None = None
) -> dict[str, int]:
    """Import Anthropic HH style JSONL ({"chosen": transcript, "rejected": transcript}); idempotent."""
    if not source.strip():
        raise InvalidInput(SOURCE_REQUIRED, field="source")
    created = skipped = 0
    with transaction.atomic():
        for number, record in uploaded_records(content, csv_column="chosen"):
            try:
                # NUL cannot be stored in PostgreSQL text: it becomes U+FFFD, the rest is kept as it came.
                prompt, chosen = hh_transcript(str(record["chosen"]).replace("\x00", "\ufffd"))
                rejected_prompt, rejected = hh_transcript(str(record["rejected"]).replace("\x00", "\ufffd"))
            except (KeyError, ValueError) as error:
                raise InvalidInput(HH_PAIR_INVALID.format(line=number), field="file") from error
            if rejected_prompt != prompt:
                raise InvalidInput(HH_PAIR_INVALID.format(line=number), field="file")
            row_hash = hashlib.sha256(json.dumps([prompt, chosen, rejected]).encode()).hexdigest()
            _, made = ExternalPreference.objects.get_or_create(
                source=source.strip(),
                row_hash=row_hash,
                defaults={"harmless": harmless, "prompt": prompt, "chosen": chosen, "rejected": rejected},
            )
            created += made
            skipped += not made
        details = {"source": source.strip(), "harmless": harmless, "created": created, "skipped": skipped}
        audit_record(actor=created_by, action="preferences.import", details=details)
    return {"created": created, "skipped": skipped}
