"""Records of an uploaded file (prompt pools, open-source preference pairs): JSONL or CSV, numbered by line, so
that a refusal names the line at fault."""

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from backend.errors import InvalidInput

UPLOAD_FORMAT = "The file must be JSONL (one object per line) or CSV with a '{column}' column."
UPLOAD_LINE = "Line {line}: {problem}"


def uploaded_records(content: bytes, *, csv_column: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) from JSONL bytes, or from CSV bytes whose header has `csv_column`."""
    text = content.decode("utf-8-sig")
    first = text.lstrip()[:1]
    if first == "{":
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise InvalidInput(UPLOAD_LINE.format(line=number, problem=error.msg), field="file") from error
                if not isinstance(record, dict):
                    raise InvalidInput(UPLOAD_LINE.format(line=number, problem="not an object"), field="file")
                yield number, record
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or csv_column not in reader.fieldnames:
            raise InvalidInput(UPLOAD_FORMAT.format(column=csv_column), field="file")
        for number, record in enumerate(reader, start=2):
            yield number, dict(record)


def record_flag(value: Any) -> bool:
    """A yes/no field of a record: JSON booleans as they are, CSV's "1", "true" or "yes" (any case) as true."""
    return str(value).strip().lower() in {"1", "true", "yes"} if not isinstance(value, bool) else value
